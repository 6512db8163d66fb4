"""Search on what the real model stored: `loupe batch` through llama.cpp on the tiny model, then `loupe search`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from loupe.cli import main
from loupe.models.synthetic import SyntheticModel
from loupe.store import Store
from PIL import Image, ImageDraw

TASK = {
    "name": "mark",
    "instructions": "Say which mark you see.",
    "schema": {
        "type": "object",
        "properties": {"mark": {"enum": ["ring", "bar", "none"]}},
        "required": ["mark"],
        "additionalProperties": False,
    },
    "options": {"max_tokens": 16},
}


def _pictures(folder: Path) -> dict[str, Path]:
    """A drawn panel, the same panel smaller and re-compressed, and an unrelated noise picture."""
    folder.mkdir()
    panel = Image.new("RGB", (320, 240), (200, 205, 210))
    draw = ImageDraw.Draw(panel)
    draw.ellipse((40, 40, 140, 140), outline=(20, 20, 20), width=6)
    draw.rectangle((180, 150, 300, 170), fill=(120, 60, 30))
    paths = {"panel": folder / "panel.png", "copy": folder / "panel-small.jpg", "other": folder / "noise.png"}
    panel.save(paths["panel"])
    panel.resize((160, 120)).save(paths["copy"], quality=60)
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(paths["other"])
    return paths


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_like_and_dupes_on_vectors_the_real_model_stored(tiny_models: dict[str, SyntheticModel], tmp_path: Path):
    m = tiny_models["smolvlm"]
    paths = _pictures(tmp_path / "imgs")
    task = tmp_path / "mark.json"
    task.write_text(json.dumps(TASK))
    db = str(tmp_path / "loupe.db")
    model = ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path), "--threads", "1"]
    code, _, err = _run(
        "batch", str(tmp_path / "imgs"), "--task-file", str(task), "--detail", "high", *model, "--db", db, "--json"
    )
    assert code == 0, err
    with Store(db) as store:
        ids = [r[0] for r in store.conn.execute("SELECT id FROM results ORDER BY id")]
        vectors = [store.embeddings(i) for i in ids]
    assert len(ids) == 3 and all(len(v) == 1 and v[0].dim == vectors[0][0].dim for v in vectors)  # one per image

    code, out, err = _run("search", "--like", str(paths["panel"]), "--db", db, "--json")
    assert code == 0, err
    ranked = [Path(json.loads(line)["path"]).name for line in out.splitlines()]
    assert ranked == ["panel.png", "panel-small.jpg", "noise.png"]  # the query, its copy, then the rest

    code, out, err = _run("search", "--dupes", "--db", db, "--json")
    assert code == 0, err
    groups: dict[object, set[str]] = {}
    for line in out.splitlines():
        row = json.loads(line)
        groups.setdefault(row.get("group"), set()).add(Path(row["path"]).name)
    assert {"panel.png", "panel-small.jpg"} in groups.values()
    assert all("noise.png" not in g for g in groups.values() if "panel.png" in g)


def test_index_vectors_gives_older_results_the_vectors_an_analysis_would(
    tiny_models: dict[str, SyntheticModel], tmp_path: Path
):
    m = tiny_models["smolvlm"]
    _pictures(tmp_path / "imgs")
    task = tmp_path / "mark.json"
    task.write_text(json.dumps(TASK))
    db = str(tmp_path / "loupe.db")
    model = ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path), "--threads", "1"]
    assert _run("batch", str(tmp_path / "imgs"), "--task-file", str(task), *model, "--db", db, "--json")[0] == 0
    with Store(db) as store:
        ids = [r[0] for r in store.conn.execute("SELECT id FROM results ORDER BY id")]
        before = {i: store.embeddings(i) for i in ids}
        store.conn.execute("DELETE FROM image_vectors")  # as if analyzed before vectors were kept
        assert store.without_vectors() == ids
    code, out, err = _run("index", "--vectors", *model, "--db", db, "--json")
    assert code == 0, err
    assert json.loads(out)["vectors_added"] == 3
    with Store(db) as store:
        assert store.without_vectors() == []
        assert {i: store.embeddings(i) for i in ids} == before  # the same pixels, the same model: the same vectors
