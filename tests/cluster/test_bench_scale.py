"""bench.scale on two images of the tiny model: every run (local, 1 and 2 actors) measured on real work, the driver's
own time per image counted, and the note's single-writer limit computed from that measurement."""

from __future__ import annotations

import json
from pathlib import Path

from bench.scale import main


def test_scale_measures_each_run(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    argv = ["--json", str(out), "--items", "2", "--model", "tiny-smolvlm", "--dir", str(tmp_path / "w")]
    assert main([*argv, "--models", str(tmp_path / "models")]) == 0  # never the user's cache
    report = json.loads(out.read_text())
    runs = {r["run"]: r for r in report["runs"]}
    assert list(runs) == ["local batch, 2 threads", "ray, 1 actor(s) x 1 thread", "ray, 2 actor(s) x 1 thread"]
    for r in runs.values():
        assert r["images"] == 2 and r["images_per_s"] > 0 and r["wall_s"] > 0
    driver = [r["driver_ms_per_image"] for r in report["runs"][1:]]
    assert all(d > 0 for d in driver)
    assert f"at {max(driver):.1f} ms per image" in report["note"]
