"""The weight-buffer decision (loupe.backends.llama_cpu): never llama.cpp's AMX buffer, whose matrix product crashes.

The decision logic runs on faked inputs (an AMX CPU cannot be conjured on a machine without one); whether the choice
reaches llama.cpp is checked on the real library through its own load log, and tests/integration/test_every_weight_type
decodes every catalog quantization under both choices on whatever CPU runs the suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from loupe.backends import llama_cpu
from loupe.backends.llama_cpu import ENV, CpuPlan, decide, load_llama, plan, setting_from_env
from loupe.core.errors import BackendError
from loupe.models.synthetic import build

# the CPU line of llama_print_system_info() for a -march=native build on a Sapphire Rapids Xeon
SPR_FEATURES = {"AVX2": "1", "AVX512": "1", "AVX512_VNNI": "1", "AVX512_BF16": "1", "AMX_INT8": "1", "REPACK": "1"}
ZEN_FEATURES = {"AVX2": "1", "FMA": "1", "REPACK": "1"}
SPR_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8 arat
"""


def test_an_amx_buffer_means_no_extra_buffers_at_all():
    extra, reason = decide("auto", ("AMX", "CPU_REPACK"), SPR_FEATURES)
    assert extra is False and "AMX" in reason and "ggml_backend_amx_mul_mat" in reason


def test_an_amx_build_whose_buffers_cannot_be_listed_is_also_kept_off_amx():
    assert decide("auto", None, SPR_FEATURES)[0] is False
    assert decide("auto", None, ZEN_FEATURES)[0] is True


@pytest.mark.parametrize("buffers", [("CPU_REPACK",), (), ("KLEIDIAI", "CPU_REPACK")])
def test_without_amx_repacked_layouts_stay(buffers):
    assert decide("auto", buffers, ZEN_FEATURES)[0] is True


def test_the_environment_forces_either_way():
    assert decide("on", ("AMX", "CPU_REPACK"), SPR_FEATURES)[0] is True
    assert decide("off", ("CPU_REPACK",), ZEN_FEATURES)[0] is False
    assert setting_from_env({}) == "auto" and setting_from_env({ENV: " OFF "}) == "off"
    assert setting_from_env({ENV: "1"}) == "on" and setting_from_env({ENV: "no"}) == "off"


def test_a_bad_setting_is_a_one_line_error_naming_the_variable():
    with pytest.raises(BackendError) as info:
        setting_from_env({ENV: "sometimes"})
    assert str(info.value).count("\n") == 0 and ENV in str(info.value) and "'sometimes'" in str(info.value)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(SPR_CPUINFO)
    assert llama_cpu.cpu_flags(cpuinfo) == (
        "avx2",
        "avx512f",
        "avx512_vnni",
        "avx512_bf16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
    )
    assert llama_cpu.cpu_flags(tmp_path / "missing") == ()


def test_plan_on_a_faked_amx_machine_keeps_weights_in_the_plain_buffer(monkeypatch: pytest.MonkeyPatch):
    """What an AMX machine's llama.cpp reports, faked at the two places it is read."""
    monkeypatch.setattr(llama_cpu, "extra_buffer_types", lambda: ("AMX", "CPU_REPACK"))
    monkeypatch.setattr(llama_cpu, "system_features", lambda: SPR_FEATURES)
    p = plan({})
    assert p.extra_buffers is False and p.buffers_in_use == ("CPU",)
    doc = p.as_dict()
    assert doc["buffer_types_available"] == ["AMX", "CPU_REPACK"] and doc["buffer_types_in_use"] == ["CPU"]
    assert plan({ENV: "on"}).buffers_in_use == ("AMX", "CPU_REPACK", "CPU")


def test_this_machines_llama_cpp_is_read_for_real():
    """The registry query and the system info agree with each other on the real library."""
    p = plan({})
    assert p.buffer_types is not None, "ggml's extra buffer types could not be listed"
    features = llama_cpu.system_features()
    assert features, "llama_print_system_info() gave no CPU features"
    assert ("CPU_REPACK" in p.buffer_types) == (features.get("REPACK") == "1")
    if features.get("AMX_INT8") != "1":
        assert "AMX" not in p.buffer_types
    assert p.extra_buffers is ("AMX" not in p.buffer_types)


@pytest.fixture(scope="module")
def q4_0_model(tmp_path_factory: pytest.TempPathFactory):
    return build("tiny-smolvlm", tmp_path_factory.mktemp("q4"), text_type="q4_0", mmproj_type="f16")


@pytest.mark.parametrize("extra", [True, False])
def test_the_choice_reaches_llama_cpp(q4_0_model, extra: bool, capsys: pytest.CaptureFixture[str]):
    """llama.cpp's own load log names every buffer it filled: with extra buffers off, no repacked (or AMX) one."""
    real = plan({})
    forced = CpuPlan(extra, "test", "auto", real.buffer_types, real.features, real.cpu_flags)
    llm = load_llama(forced, model_path=str(q4_0_model.text_path), n_ctx=256, n_threads=1, verbose=True)
    try:
        assert bool(llm.model_params.use_extra_bufts) is extra
    finally:
        llm.close()
    log = capsys.readouterr().err
    buffers = {
        line.split("model buffer size")[0].split(":")[-1].strip()
        for line in log.splitlines()
        if "model buffer size" in line
    }
    assert buffers, log[-2000:]
    if extra:
        assert buffers - {"CPU", "CPU_Mapped"} <= set(real.buffer_types or ())
        if "CPU_REPACK" in (real.buffer_types or ()):  # Q4_0 with rows of 8 is repacked on x86-64 and ARM
            assert "CPU_REPACK" in buffers
    else:
        assert buffers <= {"CPU", "CPU_Mapped"}, buffers


def test_loupe_doctor_says_what_is_in_use_and_why(monkeypatch: pytest.MonkeyPatch):
    import io
    import json

    from loupe.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["doctor", "--json"], out, err) == 0
    doc = json.loads(out.getvalue())
    assert doc["buffer_types_in_use"][-1] == "CPU" and doc["weight_repack"] == "auto" and doc["reason"]
    monkeypatch.setattr(llama_cpu, "extra_buffer_types", lambda: ("AMX", "CPU_REPACK"))
    out = io.StringIO()
    assert main(["doctor"], out, err) == 0
    text = out.getvalue()
    assert "weights loaded into: CPU (weight repack: auto)" in text and "ggml_backend_amx_mul_mat" in text
    monkeypatch.setenv(ENV, "maybe")
    out, err = io.StringIO(), io.StringIO()
    assert main(["doctor"], out, err) == 2
    assert err.getvalue().count("\n") == 1 and ENV in err.getvalue()
