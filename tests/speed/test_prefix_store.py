"""The task prompt's KV state kept on disk between processes: real llama.cpp save/restore on the tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.prefix_store import ENV, PrefixStore
from loupe.models.synthetic import SyntheticModel
from PIL import Image

from tests.conftest import FAMILIES, defects_request


@pytest.fixture(params=FAMILIES)
def model(request: pytest.FixtureRequest, tiny_models: dict[str, SyntheticModel]) -> SyntheticModel:
    return tiny_models[request.param]


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    arr = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "p.jpg"
    Image.fromarray(arr).save(path, quality=90)
    return path


def _run(model: SyntheticModel, store: PrefixStore | None, picture: Path):
    """A fresh backend (as a new process would have) analyzing the picture once."""
    b = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, prefix_store=store)
    try:
        return b.generate(defects_request(b, picture))
    finally:
        b.close()


def test_a_new_process_loads_the_task_prefix_instead_of_evaluating_it(model, picture, tmp_path):
    store = PrefixStore(tmp_path / "kv")
    plain = _run(model, None, picture)
    first = _run(model, store, picture)
    saved = list((tmp_path / "kv").glob("*.kv"))
    assert len(saved) == 1 and saved[0].stat().st_size > 0
    assert first.timings["prefix_tokens_from_disk"] == 0
    second = _run(model, store, picture)
    n = second.timings["prefix_tokens_from_disk"]
    assert n >= 32 and second.timings["reused_tokens"] == n
    assert second.timings["prefill_tokens"] == first.timings["prefill_tokens"] - n
    # the restored state is the evaluated one: the same answer, token for token, as with no store at all
    assert second.text == first.text == plain.text
    assert [s.prob for s in second.steps] == pytest.approx([s.prob for s in plain.steps], rel=1e-6)


def test_a_damaged_entry_is_dropped_and_the_prefix_evaluated(model, picture, tmp_path):
    store = PrefixStore(tmp_path / "kv")
    good = _run(model, store, picture)
    (entry,) = (tmp_path / "kv").glob("*.kv")
    entry.write_bytes(b"\x00garbage" * 100)
    again = _run(model, store, picture)
    assert again.timings["prefix_tokens_from_disk"] == 0
    assert again.text == good.text
    assert entry.stat().st_size > 800  # replaced by a good state
    assert _run(model, store, picture).timings["prefix_tokens_from_disk"] > 0


def test_entries_are_per_model(tiny_models, picture, tmp_path):
    store = PrefixStore(tmp_path / "kv")
    for fam in FAMILIES:
        assert _run(tiny_models[fam], store, picture).timings["prefix_tokens_from_disk"] == 0
    assert len(list((tmp_path / "kv").glob("*.kv"))) == len(FAMILIES)


def test_the_store_keeps_the_most_recently_used_within_its_bound(tmp_path):
    store = PrefixStore(tmp_path, max_bytes=250)
    for i in range(3):
        store.save(f"k{i}", bytes([i]) * 100)
    assert store.load("k0") is None  # oldest went when the third pushed the total past 250 bytes
    assert store.load("k1") == b"\x01" * 100 and store.load("k2") == b"\x02" * 100
    store.save("big", b"x" * 1000)  # larger than the whole bound: not kept
    assert store.load("big") is None
    assert PrefixStore.key("m", [1, 2, 3]) != PrefixStore.key("m", [1, 2, 4]) != PrefixStore.key("n", [1, 2, 4])
    assert not list(tmp_path.glob("*.part"))


def test_the_default_store_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, "off")
    assert PrefixStore.default() is None
    monkeypatch.setenv(ENV, str(tmp_path / "here"))
    store = PrefixStore.default()
    assert store is not None and store.root == tmp_path / "here"


def test_an_unwritable_store_is_not_an_error(model, picture, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run(model, PrefixStore(blocker / "kv"), picture)
    assert result.text and result.timings["prefix_tokens_from_disk"] == 0
