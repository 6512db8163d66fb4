"""`loupe models list | pull | import | verify`: the command side of the local model store."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from loupe.cli.common import declare, examples, progress_bar
from loupe.models.store import ModelStore, default_model_root


def _jsonable(obj: Any) -> Any:
    data = asdict(obj)
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}


def models_list(store: ModelStore, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Every known model (GGUF pairs, then MLX / ONNX directories) and its state."""
    rows = store.listing()
    if args.json:
        out.write(json.dumps([_jsonable(r) for r in rows]) + "\n")
        return 0
    out.write(f"  {'NAME':24} {'TYPE':5} {'KIND':10} {'STATE':10} {'SIZE':>11}  {'LICENSE':11} NOTE\n")
    for r in rows:
        mark = "*" if r.is_default else " "
        size = f"{r.size_bytes / 1e6:8.1f} MB" if r.size_bytes else "        -  "
        note = "  ".join(str(x) for x in (r.detail, r.path) if x)
        out.write(
            f"{mark} {r.name:24} {r.format:5} {r.kind:10} {r.state:10} {size}  {r.license or '-':11} {note}".rstrip()
            + "\n"
        )
    out.write("(* the default model)\n")
    return 0


def try_load(text: Path, mmproj: Path) -> None:
    """Load a GGUF pair once in a model process (loupe.backends.worker.ModelProbe): a file llama.cpp refuses or
    crashes on is a one-line ModelLoadError naming it, before anything relies on it. Skipped without llama.cpp or
    with the model process turned off ($LOUPE_MODEL_WORKER=off: loading it here could take this process down)."""
    from loupe.backends.registry import missing
    from loupe.backends.worker import ModelProbe, enabled

    if missing("llama_cpp") is not None or not enabled() or not text.is_file() or not mmproj.is_file():
        return  # the store's own checks name a missing file
    probe = ModelProbe()
    try:
        probe.check(text, mmproj)
    finally:
        probe.close()


def models_pull(store: ModelStore, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Download and verify a catalog model (a GGUF pair, or an MLX / ONNX directory)."""
    progress = progress_bar(err, not args.json)
    if args.name in store.directories:
        path = store.directories.pull(args.name, progress=progress)
        fmt = store.directories.entry(args.name).format
        doc: dict[str, str] = {"name": args.name, "format": fmt, "path": str(path)}
    else:
        resolved = store.pull(args.name, progress=progress)
        try_load(resolved.text_path, resolved.mmproj_path)
        doc = {
            "name": resolved.name,
            "format": "gguf",
            "text": str(resolved.text_path),
            "mmproj": str(resolved.mmproj_path),
        }
    out.write((json.dumps(doc) if args.json else f"{doc['name']}: installed and verified") + "\n")
    return 0


def models_import(store: ModelStore, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Register local GGUF files (for machines with no network), once a model process has loaded them."""
    try_load(Path(args.text), Path(args.mmproj))
    resolved = store.import_local(Path(args.text), Path(args.mmproj), name=args.name, copy=args.copy)
    doc = {
        "name": resolved.name,
        "family": resolved.family,
        "text": str(resolved.text_path),
        "mmproj": str(resolved.mmproj_path),
    }
    out.write((json.dumps(doc) if args.json else f"imported {resolved.name} ({resolved.family})") + "\n")
    return 0


def models_verify(store: ModelStore, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Full sha256 check; non-zero exit when any file fails."""
    reports = store.verify(args.name, progress=progress_bar(err, not args.json))
    if args.json:
        out.write(json.dumps([_jsonable(r) for r in reports]) + "\n")
    else:
        for r in reports:
            out.write(f"{r.name} {r.role}: {'ok' if r.ok else r.problem}\n")
        if not reports:
            out.write("no model files on disk to verify\n")
    return 0 if all(r.ok for r in reports) else 1


ACTIONS = {"list": models_list, "pull": models_pull, "import": models_import, "verify": models_verify}


def run_models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Dispatch a `loupe models` action."""
    return ACTIONS[args.action](ModelStore(default_model_root()), args, out, err)


def add_parsers(sub: Any) -> None:
    """Register `models` (list, pull, import, verify) on the `loupe` parser."""
    m = examples(
        sub.add_parser("models", help="list, pull, import or verify models"),
        "loupe models list",
        "loupe models pull smolvlm-256m",
        "loupe models import text.gguf --mmproj mmproj.gguf --name my-model",
        "loupe models verify",
    )
    msub = m.add_subparsers(dest="action", required=True)
    json_help = "machine-readable output only"
    ml = examples(
        msub.add_parser("list", help="every known model, its state, size and licence"),
        "loupe models list",
        "loupe models list --json",
    )
    ml.add_argument("--json", action="store_true", help=json_help)
    mp = examples(
        msub.add_parser("pull", help="download a catalog model and verify it"),
        "loupe models pull smolvlm-256m",
        "loupe models pull smolvlm-256m-onnx-q4 --json",
    )
    mp.add_argument("name", help="a catalog name (see `loupe models list`)")
    mp.add_argument("--json", action="store_true", help=json_help)
    mi = examples(
        msub.add_parser("import", help="register local GGUF files (no network needed)"),
        "loupe models import SmolVLM-256M-Q8_0.gguf --mmproj mmproj-SmolVLM-256M-Q8_0.gguf",
        "loupe models import text.gguf --mmproj mmproj.gguf --name my-model --copy",
    )
    mi.add_argument("text", metavar="TEXT.gguf", help="the text model's GGUF file")
    mi.add_argument("--mmproj", required=True, metavar="MMPROJ.gguf", help="the matching vision projector GGUF file")
    mi.add_argument("--name", help="the name to use it by (default: from the file name)")
    mi.add_argument("--copy", action="store_true", help="copy the files into Loupe's model folder")
    mi.add_argument("--json", action="store_true", help=json_help)
    mv = examples(
        msub.add_parser("verify", help="check model files against their sha256 (non-zero exit on a mismatch)"),
        "loupe models verify",
        "loupe models verify smolvlm-256m --json",
    )
    mv.add_argument("name", nargs="?", help="one model (default: every model with files on disk)")
    mv.add_argument("--json", action="store_true", help=json_help)
    for sp in (m, ml, mp, mi, mv):
        declare(sp)
