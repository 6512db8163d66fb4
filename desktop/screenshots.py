"""Screenshots of the real window for the README: `python -m loupe.desktop.screenshots OUT_DIR` (under Xvfb, e.g.
`xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python -m loupe.desktop.screenshots docs/screenshots`). It runs the real
engine on the tiny synthetic model (random weights: the boxes and values are meaningless, the app is real).
Run it from a checkout: the cloud page's connection test talks to the tests' stub server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "samples" / "scratched-panel.jpg"


def _panels(folder: Path) -> list[Path]:
    """A few plain 'panel' photos with a drawn scratch, plus a file that is not an image."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (shade, line) in enumerate(
        [(190, (40, 60, 260, 140)), (150, (300, 50, 120, 220)), (205, (60, 200, 330, 190))]
    ):
        img = Image.new("RGB", (400, 280), (shade, shade + 5, shade + 12))
        draw = ImageDraw.Draw(img)
        draw.rectangle((10, 10, 389, 269), outline=(90, 90, 100), width=4)
        draw.line(line, fill=(60, 50, 45), width=3)
        path = folder / f"panel-{i + 1:02d}.png"
        img.save(path)
        out.append(path)
    bad = folder / "scan-broken.jpg"
    bad.write_bytes(b"this is not a JPEG")
    return [*out, bad]


SCRATCH_TASK = """name: scratches
instructions: Find the scratches on this panel; give each a box and a short note.
schema:
  type: object
  properties:
    scratches:
      type: array
      maxItems: 2
      items:
        type: object
        properties:
          label: {enum: [scratch, dent, stain]}
          box_2d:
            type: array
            prefixItems:
              - {type: integer, minimum: 150, maximum: 350}
              - {type: integer, minimum: 150, maximum: 300}
              - {type: integer, minimum: 450, maximum: 700}
              - {type: integer, minimum: 550, maximum: 800}
            items: false
            minItems: 4
          note: {type: string, maxLength: 40}
        required: [label, box_2d, note]
        additionalProperties: false
  required: [scratches]
  additionalProperties: false
"""


LADDER_TASK = """name: panel-check
instructions: Is this panel fine? If not, say what is wrong.
schema: {type: object, properties: {ok: {type: boolean}, problem: {type: string, maxLength: 30}},
         required: [ok, problem], additionalProperties: false}
escalation: {ladder: ["local@low", "local@high", "cloud@high"], thresholds: {overall: 0.9}, cloud: true}
"""


def _wait(app: object, until: Callable[[], bool], timeout_s: float = 120.0) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > end:
            raise TimeoutError("the window did not get there in time")
        QApplication.processEvents()
        time.sleep(0.01)


def _settle(seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    _wait(None, lambda: time.monotonic() > end)


def _labelled_set(folder: Path, images: list[Path]) -> Path:
    """A labelled set for the `describe` task (JSONL of {image, data}) beside copies of `images`."""
    import shutil

    (folder / "images").mkdir(parents=True, exist_ok=True)
    labels = [
        {"caption": "a grey panel with one scratch", "tags": ["panel", "scratch"]},
        {"caption": "a dark panel with a long scratch", "tags": ["panel", "scratch"]},
        {"caption": "a light panel, scratched near the bottom", "tags": ["panel"]},
    ]
    lines = []
    for image, data in zip(images, labels, strict=False):
        shutil.copy(image, folder / "images" / image.name)
        lines.append(json.dumps({"image": f"images/{image.name}", "data": data}))
    path = folder / "labels.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Drive the window through a session and save desk-*.png into OUT_DIR."""
    from loupe.desktop.bridge import EngineBridge
    from loupe.desktop.main_window import MainWindow
    from loupe.desktop.runner import LoadedModel
    from loupe.models import ModelStore
    from loupe.models.synthetic import build
    from loupe.store import Store
    from PIL import Image
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    out = Path((argv or sys.argv[1:] or ["docs/screenshots"])[0])
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Loupe")
    work = Path(tempfile.mkdtemp(prefix="loupe-shots-"))
    os.environ["XDG_DATA_HOME"] = str(work / "data")  # evaluation reports land in the temp dir, not the user's
    tiny = build("tiny-smolvlm", work / "models")

    def load() -> LoadedModel:
        from loupe.api import ModelSpec, open_model

        spec = ModelSpec(model="tiny-smolvlm", path=str(tiny.text_path), mmproj=str(tiny.mmproj_path), threads=2)
        return LoadedModel(open_model(spec), "tiny-smolvlm", synthetic=True)

    store = Store(work / "loupe.db")
    bridge = EngineBridge(load, work / "loupe.db")
    window = MainWindow(
        bridge,
        store,
        settings=QSettings(str(work / "loupe.ini"), QSettings.Format.IniFormat),
        model_store=ModelStore(work / "store"),
        make_loader=lambda _n: load,
        model_name="tiny-smolvlm",
    )
    window.resize(1320, 820)
    window.show()
    bridge.start()
    task_file = work / "scratches.yaml"  # a user task whose boxes' ranges keep the random model's boxes visible
    task_file.write_text(SCRATCH_TASK)
    window.tasks.add_file(str(task_file))
    window.enqueue([str(SAMPLE)])
    window.tasks.combo.setCurrentText("defects")
    panels = _panels(work / "photos")
    window.enqueue([str(p) for p in panels])
    ladder_file = work / "panel-check.yaml"  # a ladder: local low detail, local high detail, then the cloud (off)
    ladder_file.write_text(LADDER_TASK)
    window.tasks.add_file(str(ladder_file))
    window.enqueue([str(panels[1])])
    window.tasks.combo.setCurrentText("defects")
    _wait(app, lambda: window.queue.unfinished() == 0)
    _settle(1.0)  # thumbnails

    window.queue.tree.setCurrentItem(window.queue.tree.topLevelItem(0))
    _wait(app, lambda: any(i.type() == 7 for i in window.result_view.canvas.scene().items()))
    _settle()
    window.grab().save(str(out / "desk-main.png"))
    window.result_view.grab().save(str(out / "desk-result.png"))

    last = window.queue.tree.topLevelItemCount() - 1
    window.queue.tree.setCurrentItem(window.queue.tree.topLevelItem(last))
    _wait(app, lambda: any(i.type() == 7 for i in window.result_view.canvas.scene().items()))
    _settle()
    window.result_view.grab().save(str(out / "desk-steps.png"))

    window.tabs.setCurrentWidget(window.review)
    window.review.list.setCurrentRow(1)
    _wait(app, lambda: any(i.type() == 7 for i in window.review.canvas.scene().items()))
    _settle()
    window.grab().save(str(out / "desk-review.png"))
    _search(window, str(panels[1].absolute()), out)

    dialog = window.open_settings()
    _settle()
    dialog.grab().save(str(out / "desk-settings.png"))
    dialog.reject()
    _cloud_page(window, out)
    _evaluate(window, work, panels[:3], out)
    if window.models is not None:
        _models(window, work, out)
    editor = window.tasks.open_editor()
    editor.schema.setPlainText('{"type": "object", "properties": {"count": {"type": "integr"}}}')
    _settle()
    editor.grab().save(str(out / "desk-task-editor.png"))
    editor.reject()
    window.close()
    _kiosk(app, store, out)
    store.close()
    for png in sorted(out.glob("desk-*.png")):  # 256 colors: small files, no visible loss for a UI
        with Image.open(png) as shot:
            shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
        print(png, png.stat().st_size // 1024, "KB")
    return 0


def _cloud_page(window: Any, out: Path) -> None:
    """The settings dialog with the cloud on, pointed at a local OpenAI-compatible server, after Test connection."""
    from tests.hybrid.stub_server import StubCloud, completion

    stub = StubCloud([completion("OK", prompt_tokens=14, completion_tokens=1)])
    try:
        dialog = window.open_settings()
        dialog.cloud_enabled.setChecked(True)
        dialog.preset.setCurrentText("llama_cpp_server")
        dialog.base_url.setText(stub.base_url)
        dialog.cloud_model.setText("qwen2.5-vl-7b")
        dialog.timeout.setValue(30)
        dialog.max_side.setValue(768)
        dialog.price_in.setValue(0.15)
        dialog.price_out.setValue(0.6)
        dialog.test_connection()
        _wait(None, lambda: dialog.check is None)
        _settle()
        dialog.grab().save(str(out / "desk-settings-cloud.png"))
        dialog.reject()
    finally:
        stub.close()


def _models(window: Any, work: Path, out: Path) -> None:
    """The Models dialog after downloading a directory (ONNX) model through it from a local imitation of the Hub:
    the catalog plus the tiny test model (tests/backends/tiny) published there as `tiny-onnx`."""
    from loupe.desktop.loading import format_problem
    from loupe.models import DEFAULT_CATALOG_PATH, ModelStore, load_catalog

    from tests.engine.fake_hub import FakeHub, serving
    from tests.engine.test_models_dirs import ENTRY, publish_dir

    with serving(FakeHub()) as hub:
        (work / "hub").mkdir()
        publish_dir(hub, work / "hub")
        catalog = work / "catalog.toml"
        catalog.write_text(DEFAULT_CATALOG_PATH.read_text() + ENTRY)
        window.models.set_store(
            ModelStore(work / "store", catalog=load_catalog(catalog), endpoint=hub.endpoint, token=False)
        )
        models = window.models.open_dialog()
        models.select("tiny-onnx")
        models.start_download()
        _wait(None, lambda: models.download is None)
        models.select("tiny-onnx")
        assert format_problem(models.store, "tiny-onnx") is None
        _settle()
        models.grab().save(str(out / "desk-models.png"))
        models.close()


def _kiosk(app: Any, store: Any, out: Path) -> None:
    """The kiosk as a line box shows it: no window manager under xvfb-run, so the window takes the screen's
    geometry itself; the shift so far from the defects results above, judged by the task's verdict rules."""
    from datetime import UTC, datetime

    from loupe import taskfile
    from loupe.core.tasks import builtin_task
    from loupe.core.verdict import judge
    from loupe.desktop.kiosk.app import cover_screen
    from loupe.desktop.kiosk.bridge import LineBridge
    from loupe.desktop.kiosk.window import KioskWindow
    from loupe.floor import LineOutcome

    task = builtin_task("defects")
    rules = taskfile.parse(task).rules
    threshold = task.options.review_threshold or 0.5
    history = [
        LineOutcome(s.path, s.id, s.result, judge(rules, s.result, review_threshold=threshold), False, s.created)
        for s in store.results()
        if s.result.task == "defects"
    ]
    history.sort(key=lambda o: (o.result.data is not None, o.at), reverse=True)  # the last one with a picture
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    history = [LineOutcome(o.image, o.result_id, o.result, o.judgement, o.cached, now) for o in history]
    counts: dict[str, int] = {}
    for o in history:
        counts[o.judgement.verdict.value] = counts.get(o.judgement.verdict.value, 0) + 1
    bridge = LineBridge()
    window = KioskWindow(
        bridge,
        task="defects",
        pin="1",
        history=history,
        counts=counts,
        schema=task.schema,
        synthetic="tiny-smolvlm",
        outputs_health=lambda: "outputs: mqtt ok, 0 queued",
    )
    bridge.model_state("ready", "tiny-smolvlm")
    cover_screen(window)
    _settle(1.5)
    window.grab().save(str(out / "kiosk-fullscreen.png"))
    window.unlocked = True
    window.close()


def _search(window: Any, path: str, out: Path) -> None:
    """The Search tab after "Show duplicates" on a panel photo (it was analysed twice: plain and by the ladder)."""
    before = window.search.searched
    window.show_duplicates(window._result_ids.get(path))
    _wait(None, lambda: window.search.searched > before)
    _settle(1.0)  # thumbnails
    window.grab().save(str(out / "desk-search.png"))


def _evaluate(window: Any, work: Path, images: list[Path], out: Path) -> None:
    """The Evaluate tab after evaluating the `describe` task on a small labelled set."""
    window.tasks.combo.setCurrentText("describe")
    window.tabs.setCurrentWidget(window.evaluate)
    window.evaluate.path.setText(str(_labelled_set(work / "labelled", images)))
    shown: list[str] = []
    window.evaluate.reportShown.connect(shown.append)
    window.evaluate.failed.connect(shown.append)
    window.evaluate.start()
    _wait(None, lambda: bool(shown), timeout_s=300)
    _settle(1.0)
    window.grab().save(str(out / "desk-evaluate.png"))
    window.tasks.combo.setCurrentText("defects")


if __name__ == "__main__":
    raise SystemExit(main())
