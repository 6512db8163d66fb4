"""Which CPU weight layouts llama.cpp may use here: never its AMX buffer, which crashes on the first matrix product.

llama-cpp-python builds llama.cpp with `-march=native`. On a CPU with Intel AMX (Xeon 4th generation "Sapphire
Rapids" and later) that build holds llama.cpp's AMX kernels, and loading a Q8_0/Q4_0/Q4_K/... model moves its
weights into the AMX buffer type; the first matrix product then dies with SIGSEGV inside
`ggml_backend_amx_mul_mat` (an open upstream crash). llama.cpp calls these *extra buffer types*: "AMX" and
"CPU_REPACK" (weights re-laid for the AVX2/AVX-512/NEON kernels) on x86-64. They are all or nothing at load time
(`llama_model_params.use_extra_bufts`): llama-cpp-python exposes no finer switch.

So the rule, decided from what the loaded llama.cpp itself reports (its extra buffer types, asked through ggml's
backend registry, and `llama_print_system_info()`), not from a CPU model list:
- `auto` (default): extra buffer types are used unless the build offers the AMX one (or reports AMX_INT8 when the
  list cannot be read). On such a machine every weight stays in the plain CPU buffer, which every quantization type
  supports; the repacked layout's speed is lost there, the crash with it (docs/bench/cpu-buffers.md measures both).
- `on` / `off`: $LOUPE_WEIGHT_REPACK forces the choice (`on` on an AMX build brings the crash back: for testing a
  fixed llama.cpp).
`loupe doctor` shows the decision and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama as llama_module
from loupe.core.errors import BackendError

ENV = "LOUPE_WEIGHT_REPACK"  # auto | on | off
SETTINGS = ("auto", "on", "off")
AMX_BUFFER = "AMX"  # ggml_backend_amx_buffer_type()'s name
CPUINFO = Path("/proc/cpuinfo")
# flags of /proc/cpuinfo worth showing (the instruction sets llama.cpp's CPU kernels choose between)
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


@dataclass(frozen=True)
class CpuPlan:
    """How llama.cpp loads weights on this machine, and why."""

    extra_buffers: bool  # llama_model_params.use_extra_bufts
    reason: str
    setting: str  # auto | on | off
    buffer_types: tuple[str, ...] | None  # the extra buffer types the build offers here; None: unreadable
    features: Mapping[str, str] = field(default_factory=dict)  # llama_print_system_info()'s "CPU" section
    cpu_flags: tuple[str, ...] = ()  # SHOWN_FLAGS the kernel reports for this CPU

    @property
    def buffers_in_use(self) -> tuple[str, ...]:
        """Buffer types weights may be placed in, in llama.cpp's order of preference."""
        extra = (self.buffer_types or ()) if self.extra_buffers else ()
        return (*extra, "CPU")

    def as_dict(self) -> dict[str, Any]:
        return {
            "weight_repack": self.setting,
            "extra_buffers": self.extra_buffers,
            "reason": self.reason,
            "buffer_types_available": list(self.buffer_types) if self.buffer_types is not None else None,
            "buffer_types_in_use": list(self.buffers_in_use),
            "llama_cpp_features": dict(self.features),
            "cpu_flags": list(self.cpu_flags),
        }


def setting_from_env(environ: Mapping[str, str] = os.environ) -> str:
    """$LOUPE_WEIGHT_REPACK, checked: auto (unset or empty), on or off."""
    value = environ.get(ENV, "").strip().lower() or "auto"
    aliases = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}
    value = aliases.get(value, value)
    if value not in SETTINGS:
        raise BackendError(f"${ENV} must be auto, on or off (got {environ.get(ENV)!r})")
    return value


def decide(setting: str, buffer_types: Sequence[str] | None, features: Mapping[str, str]) -> tuple[bool, str]:
    """(use extra buffer types, why) for a setting, the build's extra buffer types here and its CPU features."""
    if setting == "on":
        return True, f"${ENV}=on"
    if setting == "off":
        return False, f"${ENV}=off: every weight in the plain CPU buffer"
    if buffer_types is None:
        amx = features.get("AMX_INT8") == "1"
        if amx:
            return False, "llama.cpp was built with AMX_INT8 (its AMX buffer crashes); extra buffer types not listed"
        return True, "no AMX in this llama.cpp build"
    if AMX_BUFFER in buffer_types:
        return False, (
            "this llama.cpp offers its AMX buffer on this CPU, whose matrix product crashes "
            "(ggml_backend_amx_mul_mat): weights stay in the plain CPU buffer, not repacked"
        )
    if not buffer_types:
        return True, "this llama.cpp offers no extra buffer types here"
    return True, f"no AMX buffer here; repacked layouts allowed ({', '.join(buffer_types)})"


@functools.cache  # what the loaded library was built with: fixed for the life of the process
def system_features() -> dict[str, str]:
    """llama_print_system_info()'s CPU section as {feature: value}, e.g. {"AVX2": "1", "REPACK": "1"}."""
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    features: dict[str, str] = {}
    for part in info.split("|"):
        name, sep, value = part.partition("=")
        name = name.split(":")[-1].strip()  # "CPU : SSE3 = 1" -> "SSE3"
        if sep and name:
            features.setdefault(name, value.strip())
    return features


@functools.cache  # asked once per process: the CPU and the library do not change under it
def extra_buffer_types() -> tuple[str, ...] | None:
    """Names of the extra buffer types llama.cpp's CPU backend offers on this CPU ("AMX", "CPU_REPACK", ...), asked
    through ggml's backend registry exactly as llama.cpp's loader asks; None when that cannot be read."""
    try:
        ggml = _ggml_library()
        ggml.ggml_backend_dev_by_type.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
        ggml.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
        ggml.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
        ggml.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
        ggml.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        ggml.ggml_backend_buft_name.restype = ctypes.c_char_p
        ggml.ggml_backend_buft_name.argtypes = [ctypes.c_void_p]
        dev = ggml.ggml_backend_dev_by_type(0)  # GGML_BACKEND_DEVICE_TYPE_CPU
        if not dev:
            return None
        reg = ggml.ggml_backend_dev_backend_reg(dev)
        address = ggml.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_dev_get_extra_bufts")
        if not address:
            return ()
        get_extra = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p)(address)
        bufts = get_extra(dev)
        names: list[str] = []
        i = 0
        while bufts and bufts[i]:
            names.append(ggml.ggml_backend_buft_name(bufts[i]).decode("utf-8", "replace"))
            i += 1
        return tuple(names)
    except (OSError, AttributeError, ValueError):
        return None


def _ggml_library() -> ctypes.CDLL:
    """The libggml that llama-cpp-python's libllama uses (already loaded by importing llama_cpp)."""
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    for name in ("libggml.so", "libggml.dylib", "ggml.dll"):
        if (lib_dir / name).exists():
            return ctypes.CDLL(str(lib_dir / name))
    raise OSError(f"no libggml next to llama_cpp in {lib_dir}")


def cpu_flags(cpuinfo: Path = CPUINFO) -> tuple[str, ...]:
    """The SHOWN_FLAGS the kernel reports for this CPU (Linux); empty elsewhere."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            present = set(value.split())
            return tuple(f for f in SHOWN_FLAGS if f in present)
    return ()


def plan(environ: Mapping[str, str] = os.environ) -> CpuPlan:
    """The decision for this machine and this llama.cpp, under $LOUPE_WEIGHT_REPACK."""
    setting = setting_from_env(environ)
    features = system_features()
    buffer_types = extra_buffer_types()
    extra, reason = decide(setting, buffer_types, features)
    return CpuPlan(extra, reason, setting, buffer_types, features, cpu_flags())


_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(extra_buffers: bool) -> Iterator[None]:
    """Within: llama_cpp.Llama() loads with `use_extra_bufts = extra_buffers`.

    Llama() takes no argument for it and fills its llama_model_params from llama_model_default_params(), so the
    default is wrapped for the duration of one load, under a lock (loads are serialized; a load takes ~0.1-2 s)."""
    with _LOAD_LOCK:
        default = llama_module.llama_cpp.llama_model_default_params

        def params() -> Any:
            p = default()
            p.use_extra_bufts = extra_buffers
            return p

        llama_module.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = default


def load_llama(cpu: CpuPlan | None = None, **kwargs: Any) -> llama_cpp.Llama:
    """llama_cpp.Llama(**kwargs) loaded under `cpu` (default: plan() for this machine). Every text model Loupe,
    its benchmarks and its tests load goes through here."""
    cpu = cpu or plan()
    with _model_params(cpu.extra_buffers):
        llm = llama_cpp.Llama(**kwargs)
    if bool(llm.model_params.use_extra_bufts) != cpu.extra_buffers:  # llama-cpp-python changed how it fills them
        raise BackendError("llama-cpp-python ignored Loupe's weight-buffer choice; see engine/backends/llama_cpu.py")
    return llm
