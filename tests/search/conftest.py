"""A hand-made store for search: real image files (a JPEG, its resized and re-compressed copies, two other
pictures), results from the scripted fake backend saved through the real Store API, and hand-made image vectors."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.core.tasks import task_from_dict
from loupe.core.types import ImageEmbedding
from loupe.store import Store
from PIL import Image

TASK = {
    "name": "parts",
    "instructions": "Describe the part.",
    "schema": {
        "type": "object",
        "properties": {
            "merchant": {"type": "string"},
            "total": {"type": "number"},
            "defects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"label": {"type": "string"}, "severity": {"type": "integer"}},
                    "required": ["label", "severity"],
                },
            },
        },
        "required": ["merchant", "total", "defects"],
    },
}
# name -> (job, data); a_small and a_q30 are copies of a, b and c are other pictures
DATA = {
    "a": (1, {"merchant": "Acme Hardware", "total": 120.5, "defects": [{"label": "crack", "severity": 4}]}),
    "a_small": (1, {"merchant": "Acme Hardware", "total": 80, "defects": [{"label": "scratch", "severity": 1}]}),
    "a_q30": (1, {"merchant": "Corner Café", "total": 100, "defects": []}),
    "b": (
        1,
        {
            "merchant": "Bolt & Nut",
            "total": 250,
            "defects": [{"label": "dent", "severity": 2}, {"label": "crack", "severity": 2}],
        },
    ),
    "c": (2, {"merchant": "Zed", "total": 5, "defects": []}),
}
MODEL, DETAIL, DIM = "test-encoder", "high", 64


def picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random picture (blobs of colour), different for every seed."""
    rng = np.random.default_rng(seed)
    small = (rng.random((6, 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def write_images(folder: Path) -> dict[str, Path]:
    """a.jpg, its resized copy, its re-compressed copy, and two unrelated pictures."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.jpg" for name in ("a", "a_small", "a_q30", "b")} | {"c": folder / "c.png"}
    picture(1).save(paths["a"], quality=92)
    with Image.open(paths["a"]) as a:
        a.resize((160, 120), Image.Resampling.LANCZOS).save(paths["a_small"], quality=92)
        a.save(paths["a_q30"], quality=30)
    picture(2).save(paths["b"], quality=92)
    picture(3).save(paths["c"])
    return paths


def vector(name: str) -> bytes:
    """Hand-made embeddings: a's copies point almost where a does; b and c elsewhere."""
    rng = np.random.default_rng(7)
    base = {k: rng.normal(size=DIM) for k in ("a", "b", "c")}
    noise = np.random.default_rng(sum(name.encode())).normal(size=DIM)
    v = {"a": base["a"], "a_small": base["a"] + 0.1 * noise, "a_q30": base["a"] + 0.2 * noise}.get(name, base.get(name))
    return np.asarray(v, dtype="<f4").tobytes()


@dataclass(frozen=True)
class Made:
    db: Path
    images: dict[str, Path]
    ids: dict[str, int]  # image name -> result id


def make_store(tmp: Path, *, vectors: bool = True) -> Made:
    """The store: job 1 holds a, a_small, a_q30, b; job 2 holds c."""
    images = write_images(tmp / "images")
    db = tmp / "search.db"
    task = task_from_dict(TASK, "<test>")
    ids: dict[str, int] = {}
    with Store(db) as store:
        jobs = {
            n: store.create_job(
                key=f"k{n}",
                task=task,
                model="fake",
                settings={"backend": "fake"},
                launch={},
                paths=[str(p) for name, p in images.items() if DATA[name][0] == n],
            ).id
            for n in (1, 2)
        }
        for name, (job, data) in DATA.items():
            engine = Engine(FakeBackend([json.dumps(data)]), model="fake")
            result = engine.analyze(AnalyzeRequest((str(images[name]),), task))
            assert result.data == data
            if vectors:
                result = replace(result, embeddings=(ImageEmbedding(result.images[0].id, MODEL, DETAIL, vector(name)),))
            (item,) = [i for i in store.items(jobs[job]) if i.path == str(images[name])]
            ids[name] = store.save_result(item.id, result, sha256=result.images[0].sha256, size=None, cache_key=None)
    return Made(db, images, ids)


@pytest.fixture
def made(tmp_path: Path) -> Made:
    return make_store(tmp_path)
