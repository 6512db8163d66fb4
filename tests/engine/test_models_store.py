"""Model store: import of local files, fast checks, verify, and synthetic models built on first use."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from loupe.models.store import ModelFileCorrupt, ModelImportError, ModelNotInstalled, ModelStore, default_model_root

from tests.engine.model_files import flip_last_byte, sha256, write_gguf


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A text GGUF (llama) and an mmproj GGUF (clip, idefics3 projector) outside the store."""
    src = tmp_path / "src"
    src.mkdir()
    text = write_gguf(src / "My-Model-Q8_0.gguf", "llama", seed=1)
    mmproj = write_gguf(src / "mmproj-My-Model.gguf", "clip", projector="idefics3", seed=2)
    return text, mmproj


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store", token=False)


# ---- import -----------------------------------------------------------------------------------------


def test_import_registers_the_pair_with_family_and_sha256(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    resolved = store.import_local(text, mmproj)
    assert resolved.name == "my-model-q8_0"
    assert (resolved.text_path, resolved.mmproj_path) == (text, mmproj)
    assert resolved.family == "smolvlm" and not resolved.synthetic
    registry = json.loads((store.root / "registry.json").read_text())
    files = registry["models"]["my-model-q8_0"]["files"]
    assert files["text"]["sha256"] == sha256(text.read_bytes())
    assert files["mmproj"]["sha256"] == sha256(mmproj.read_bytes())
    assert files["mmproj"]["projector_type"] == "idefics3"
    again = ModelStore(store.root, token=False)  # state lives in files only
    assert again.resolve("my-model-q8_0") == resolved
    listed = {m.name: m for m in again.installed()}
    assert listed["my-model-q8_0"].state == "installed" and listed["my-model-q8_0"].kind == "imported"
    assert not list(store.root.glob("*.tmp"))  # atomic writes leave no temporaries behind


def test_import_refuses_swapped_files(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    with pytest.raises(ModelImportError, match="swapped"):
        store.import_local(mmproj, text)
    with pytest.raises(ModelImportError, match="not a vision projector"):
        store.import_local(text, text)
    with pytest.raises(ModelImportError, match="not a text model"):
        store.import_local(mmproj, mmproj)
    assert not (store.root / "registry.json").exists()


def test_import_refuses_non_gguf_and_catalog_names(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    junk = text.with_name("junk.gguf")
    junk.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelImportError, match="bad magic"):
        store.import_local(junk, mmproj)
    with pytest.raises(ModelImportError, match="taken by the catalog"):
        store.import_local(text, mmproj, name="smolvlm-256m")


def test_import_needs_explicit_family_when_projector_is_unknown(store: ModelStore, tmp_path: Path) -> None:
    text = write_gguf(tmp_path / "t.gguf", "llama")
    mmproj = write_gguf(tmp_path / "m.gguf", "clip", projector="mlp")
    with pytest.raises(ModelImportError, match="cannot tell which model family"):
        store.import_local(text, mmproj, name="odd")
    assert store.import_local(text, mmproj, name="odd", family="smolvlm").family == "smolvlm"


def test_import_copy_keeps_working_after_the_originals_are_gone(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    data = text.read_bytes()
    resolved = store.import_local(text, mmproj, name="mine", copy=True)
    text.unlink()
    mmproj.unlink()
    assert resolved.text_path.parent == store.root / "imported" / "mine"
    assert store.resolve("mine").text_path.read_bytes() == data
    assert not list(resolved.text_path.parent.glob("*.part"))


# ---- fast checks and verify ------------------------------------------------------------------------


def test_missing_catalog_model_message_names_the_fix(store: ModelStore) -> None:
    with pytest.raises(ModelNotInstalled) as err:
        store.resolve()  # the default model
    message = str(err.value)
    assert "SmolVLM-256M-Instruct-Q8_0.gguf" in message
    assert "`loupe models pull smolvlm-256m`" in message
    assert "`loupe models import TEXT.gguf --mmproj MMPROJ.gguf`" in message
    with pytest.raises(ModelNotInstalled, match="gated"):
        store.resolve("gemma3-4b")


def test_missing_imported_file_message_says_how_to_reimport(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    store.import_local(text, mmproj, name="mine")
    text.unlink()
    with pytest.raises(ModelNotInstalled, match=r"loupe models import .* --mmproj .* --name mine") as err:
        store.resolve("mine")
    assert str(text) in str(err.value)
    assert {m.name: m.state for m in store.installed()}["mine"] == "missing"


def test_truncated_file_is_caught_by_resolve_and_verify(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    store.import_local(text, mmproj, name="mine")
    full = mmproj.stat().st_size
    with mmproj.open("r+b") as f:
        f.truncate(full // 2)
    with pytest.raises(ModelFileCorrupt, match="truncated") as err:
        store.resolve("mine")
    assert str(mmproj) in str(err.value) and "re-import" in str(err.value)
    reports = {r.role: r for r in store.verify("mine")}
    assert reports["text"].ok and reports["text"].problem == ""
    assert not reports["mmproj"].ok
    assert f"expected {full}" in reports["mmproj"].problem
    assert {m.name: m.state for m in store.installed()}["mine"] == "corrupt"


def test_sha256_mismatch_is_caught_by_verify_not_by_the_fast_check(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    store.import_local(text, mmproj, name="mine")
    expected = sha256(text.read_bytes())
    flip_last_byte(text)  # same size, same magic: only a full hash can tell
    store.resolve("mine")
    reports = {r.role: r for r in store.verify("mine")}
    assert not reports["text"].ok
    assert "sha256 mismatch" in reports["text"].problem
    assert reports["text"].expected_sha256 == expected
    assert reports["text"].actual_sha256 == sha256(text.read_bytes()) != expected
    assert reports["mmproj"].ok


def test_verify_all_covers_models_with_files_on_disk(store: ModelStore, pair: tuple[Path, Path]) -> None:
    store.import_local(*pair, name="mine")
    reports = store.verify()
    assert [(r.name, r.role, r.ok) for r in reports] == [("mine", "text", True), ("mine", "mmproj", True)]


def test_default_model_root_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert default_model_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("LOUPE_MODEL_DIR")
    assert default_model_root().parts[-2:] == ("loupe", "models")


# ---- synthetic models -------------------------------------------------------------------------------


@pytest.fixture
def fake_synthetic(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for loupe.models.synthetic (written elsewhere) with a builder that records its calls."""
    calls: list[str] = []

    def build(name: str, out_dir: Path, **_: object) -> types.SimpleNamespace:
        calls.append(name)
        arch = "gemma3" if name == "tiny-gemma3" else "llama"
        text = write_gguf(out_dir / f"{name}.gguf", arch)
        mmproj = write_gguf(out_dir / f"mmproj-{name}.gguf", "clip", projector="idefics3")
        return types.SimpleNamespace(text_path=text, mmproj_path=mmproj)

    monkeypatch.setitem(sys.modules, "loupe.models.synthetic", types.SimpleNamespace(build=build))
    return calls


def test_synthetic_model_is_built_once_on_first_use(store: ModelStore, fake_synthetic: list[str]) -> None:
    assert {m.name: m.state for m in store.installed()}["synthetic-gemma3"] == "missing"
    first = store.resolve("synthetic-gemma3")
    second = store.resolve("synthetic-gemma3")
    assert fake_synthetic == ["tiny-gemma3"]
    assert first == second and first.synthetic and first.family == "gemma3"
    assert first.text_path.parent == store.root / "synthetic" / "synthetic-gemma3"
    assert [r.ok for r in store.verify("synthetic-gemma3")] == [True, True]
    with first.text_path.open("r+b") as f:
        f.truncate(10)
    store.resolve("synthetic-gemma3")  # a damaged synthetic model is simply rebuilt
    assert fake_synthetic == ["tiny-gemma3", "tiny-gemma3"]
    assert not list((store.root / "synthetic").glob(".*building*"))


@pytest.mark.parametrize(("name", "family"), [("synthetic-smolvlm", "smolvlm"), ("synthetic-gemma3", "gemma3")])
def test_real_synthetic_models_build_and_import_as_their_family(store: ModelStore, name: str, family: str) -> None:
    pytest.importorskip("loupe.models.synthetic")
    built = store.resolve(name)
    assert built.family == family and built.synthetic
    assert store.import_local(built.text_path, built.mmproj_path, name=f"copy-of-{name}").family == family
