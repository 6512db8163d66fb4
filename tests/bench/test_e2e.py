"""bench.e2e runs unattended and writes the ratios the speed issue asks for (tiny model: counts, not timings)."""

from __future__ import annotations

import json

import pytest
from loupe.backends.projector_bf16 import cpu_has_bf16
from loupe.models.synthetic import SPECS

from bench import e2e, flops, machine
from bench.hf_side import available


def test_quick_run_on_the_tiny_model_writes_every_ratio(tmp_path):
    out = tmp_path / "e2e.json"
    # an F16 projector, so that a CPU with a BF16 dot product gets the BF16 copy and the projector section runs
    report = e2e.main(
        [
            "--quick",
            "--model",
            "tiny-smolvlm",
            "--model-dir",
            str(tmp_path / "models"),
            "--runs",
            "1",
            "--mmproj-type",
            "f16",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--max-tokens",
            "16",
            "--skip",
            "transformers,coldstart,vocab",
            "--json",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    for key in (
        "loupe_vs_llamacpp",
        "constraint_confidence_share",
        "low_vs_high",
        "batch_second_vs_first",
        "repeat_vs_first",
        "roofline_fraction",
        "encode_prefill_matmul_fraction",
    ):
        assert isinstance(saved[key], float) and saved[key] > 0, key
    prefill = report["reuse"]["prefill_tokens"]
    assert prefill["second"] < prefill["first"] and prefill["repeat"] == 1  # the shared prefix, then everything
    assert report["reuse"]["rows"]["repeat"]["reuse"]["image_chunks_encoded"] == 0
    assert report["llamacpp"]["raw"]["A"][0]["reuse"]["reused_tokens"] == 0  # A runs cold, like B
    assert saved["machine"]["read_gbs"] > 0 and saved["machine"]["matmul_gflops"] > 0
    if cpu_has_bf16():
        assert saved["projector_file"].endswith("-bf16.gguf") and saved["projector_copy_vs_file"] > 0
        assert len(saved["projector"]["encode_ms"]["copy"]) == len(saved["projector"]["encode_ms"]["file"]) == 3
    else:
        assert saved["projector_file"] == saved["mmproj_path"] and "skipped" in saved["projector"]


def test_flop_counts_follow_the_dimensions():
    spec = SPECS["smolvlm-256m"]
    one = flops.vision_flops(spec, 1)
    assert flops.vision_flops(spec, 13) == pytest.approx(13 * one)
    assert 150e9 < one < 250e9  # SigLIP-B/16 at 512 px: 1024 patches through 12 layers of width 768
    per_token = flops.text_flops(spec, 1000) / 1000
    assert 2 * 100e6 < per_token < 2 * 200e6  # ~135M parameters touched per token, 2 FLOPs each


def test_machine_measurements_are_positive():
    assert machine.read_bandwidth_gbs(1, mb=16, repeats=1) > 0
    assert machine.matmul_gflops(n=128, repeats=1) > 0


@pytest.mark.skipif(available() is not None, reason="needs the bench extra (torch, transformers)")
def test_transformers_side_builds_the_same_architecture_and_generates_the_asked_tokens():
    from bench.hf_side import TransformersSide

    side = TransformersSide(SPECS["tiny-smolvlm"], threads=1)
    row = side.run(text_tokens=20, tiles=2, new_tokens=3)
    assert row["new_tokens"] == 3 and row["prompt_tokens"] == 20 + 2 * SPECS["tiny-smolvlm"].image_tokens_per_tile


def test_cold_start_child_reports_its_own_peak_rss_not_the_parents(tmp_path):
    import numpy as np
    from loupe.models.synthetic import build

    from bench.coldstart import measure

    model = build("tiny-smolvlm", tmp_path)
    ballast = np.ones(300 * 2**20 // 8)  # this process holds 300 MB; Linux's ru_maxrss would carry it over exec
    out = measure(model.text_path, model.mmproj_path, e2e.SAMPLE, threads=1, max_tokens=4)
    assert out["status"] in ("ok", "truncated") and ballast.sum() > 0
    assert out["rss_after_load_bytes"] <= out["peak_rss_bytes"] < 250 * 2**20
    assert 0 < out["first_result_ms"] <= out["process_wall_ms"]


def test_busy_core_scenario_compares_adaptive_and_fixed_threads(tmp_path):
    from loupe.models.synthetic import build
    from PIL import Image

    from bench import scenarios
    from bench.sides import LoupeSide, bench_task

    model = build("tiny-smolvlm", tmp_path)
    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "img.png")
    side = LoupeSide(
        model.text_path, model.mmproj_path, 2, bench_task("defects", max_tokens=24, detail="low"), tmp_path / "img.png"
    )
    try:
        out = scenarios.busy_core(side, tmp_path / "img.png", runs=1)
    finally:
        side.close()
    assert out["decode_adaptive_vs_fixed"] > 0 and out["total_adaptive_vs_fixed"] > 0
    assert all(t in (1.0, 2.0) for t in out["adaptive"]["decode_threads"])
    assert out["fixed"]["decode_ms_per_token"] > 0
