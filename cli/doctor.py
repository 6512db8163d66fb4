"""`loupe doctor`: what this machine's llama.cpp can do and what Loupe chose for it (for bug reports and support)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO

from loupe.core.errors import BackendError
from loupe.core.hardware import default_threads, physical_cores


def add_parsers(sub: Any) -> None:
    from loupe.cli.common import declare, examples

    d = examples(
        sub.add_parser("doctor", help="the CPU features and weight buffers llama.cpp uses here, and why"),
        "loupe doctor",
        "loupe doctor --json > doctor.json           # attach to a bug report",
    )
    declare(d)
    d.add_argument("--json", action="store_true", help="machine-readable output only")


def report() -> dict[str, Any]:
    """Everything `loupe doctor` says, as one JSON-able document."""
    try:
        from loupe.backends import llama_cpu
    except ImportError as exc:
        raise BackendError(f"llama-cpp-python is not installed ({exc}); pip install -e .") from None
    from loupe.backends.worker import MEMORY_ENV, enabled

    cpu = llama_cpu.plan()
    return {
        "model_process": enabled(),
        "model_process_memory": os.environ.get(MEMORY_ENV) or "model files x 1.5 + 2 GiB, at most 90 % of RAM",
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "physical_cores": physical_cores(),
        "default_threads": default_threads(),
        "llama_cpp_python": version("llama-cpp-python"),
        **cpu.as_dict(),
        "override": f"${llama_cpu.ENV}=auto|on|off",
    }


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def run_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    doc = report()
    if args.json:
        out.write(json.dumps(doc) + "\n")
        return 0
    features = " ".join(k for k, v in doc["llama_cpp_features"].items() if v == "1")
    available = doc["buffer_types_available"]
    lines = [
        f"CPU:                 {doc['cpu']} ({doc['machine']}, {doc['physical_cores']} physical cores; "
        f"{doc['default_threads']} threads by default)",
        f"CPU flags:           {' '.join(doc['cpu_flags']) or '(none of interest reported)'}",
        f"llama.cpp:           llama-cpp-python {doc['llama_cpp_python']}, built with {features or '(no features)'}",
        f"extra buffer types:  {', '.join(available) if available else 'none' if available == [] else 'unknown'}",
        f"weights loaded into: {', '.join(doc['buffer_types_in_use'])} (weight repack: {doc['weight_repack']})",
        f"why:                 {doc['reason']}",
        f"override:            {doc['override']}",
        f"model process:       {'on' if doc['model_process'] else 'off (in-process)'}, memory ceiling "
        f"{doc['model_process_memory']} ($LOUPE_MODEL_WORKER, $LOUPE_WORKER_MEMORY)",
    ]
    out.write("\n".join(lines) + "\n")
    return 0
