"""A model reaches a worker by name, size and sha256: found where the driver has it or in a models dir, checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from loupe.cluster.modelref import ModelRefError, locate, model_ref, spec_for
from loupe.models.synthetic import SyntheticModel


@pytest.fixture
def pair(tiny_models: dict[str, SyntheticModel], tmp_path: Path) -> list[Path]:
    m = tiny_models["smolvlm"]
    out = []
    for f in (m.text_path, m.mmproj_path):
        out.append(tmp_path / "driver" / f.name)
        out[-1].parent.mkdir(exist_ok=True)
        shutil.copy(f, out[-1])
    return out


def test_found_at_the_drivers_path_then_in_a_shared_models_dir(pair: list[Path], tmp_path: Path):
    ref = model_ref("tiny", pair, catalog=False)
    assert ref.size == sum(p.stat().st_size for p in pair) and len(ref.files[0].sha256) == 64
    assert locate(ref, tmp_path / "models") == tuple(pair)
    shared = tmp_path / "models" / "tiny"
    shared.mkdir(parents=True)
    for p in pair:
        shutil.move(p, shared / p.name)  # this node does not have the driver's path: the shared dir has it
    found = locate(ref, tmp_path / "models")
    assert found == (shared / pair[0].name, shared / pair[1].name)
    spec = spec_for(ref, found, 2)
    assert (spec.label, spec.path, spec.threads) == ("tiny", str(found[0]), 2)


def test_other_bytes_or_no_file_are_one_line_errors(pair: list[Path], tmp_path: Path):
    ref = model_ref("tiny", pair, catalog=False)
    with open(pair[1], "r+b") as f:  # same name and size, other bytes: a different model
        f.seek(100)
        f.write(b"\xff\xfe")
    with pytest.raises(ModelRefError, match="sha256 differs") as info:
        locate(ref, tmp_path / "models")
    assert "\n" not in str(info.value) and pair[1].name in str(info.value)
    pair[1].unlink()
    with pytest.raises(ModelRefError, match=r"is not on .*: no .*mmproj.*--models-dir") as info:
        locate(ref, tmp_path / "models", download=False)
    assert "\n" not in str(info.value)


def test_a_catalog_name_resolves_in_the_workers_model_store(tmp_path: Path):
    """The synthetic catalog model is built on the worker's store, byte for byte the driver's."""
    from loupe.models.store import ModelStore

    driver = ModelStore(tmp_path / "driver-models").resolve("synthetic-smolvlm")
    ref = model_ref("synthetic-smolvlm", [driver.text_path, driver.mmproj_path], catalog=True)
    shutil.rmtree(tmp_path / "driver-models")
    found = locate(ref, tmp_path / "worker-models")
    assert all(str(p).startswith(str(tmp_path / "worker-models")) for p in found)
