"""Batch prefetch: the next image is read and decoded on one worker thread while the current one is analyzed."""

from __future__ import annotations

import os
import threading

from loupe.api import AnalyzeRequest, Engine
from loupe.backends.fake import FakeBackend
from loupe.batch import BatchRunner, open_job
from loupe.core.images.files import expand
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.prefetch import Prefetcher, file_identity, read
from loupe.core.tasks import builtin_task
from loupe.store import Store

from tests.store.conftest import make_images

CAPTION = '{"caption": "noise", "tags": ["noise"]}'


def _job(store: Store, folder):
    inputs = [os.path.abspath(folder)]
    paths = [os.path.abspath(p) for p in expand(inputs)]
    job, _ = open_job(
        store,
        inputs=inputs,
        paths=paths,
        task=builtin_task("describe"),
        model="fake",
        settings={"backend": "fake"},
        launch={"inputs": inputs},
    )
    return job


def test_next_image_is_decoded_on_the_worker_while_the_current_one_is_analyzed(tmp_path):
    folder = make_images(tmp_path / "imgs", 4)
    (folder / "003.png").write_bytes(b"not a png")  # a bad file is still reported by the engine
    loaded: dict[str, threading.Event] = {}
    threads: dict[str, str] = {}

    def load(path: str) -> LoadedImage:
        threads[os.path.basename(path)] = threading.current_thread().name
        loaded.setdefault(path, threading.Event()).set()
        return load_image(path)

    engine = Engine(FakeBackend([CAPTION]), model="fake")
    got: list[object] = []
    order: list[str] = []

    def analyze(image, task):
        got.append(image)
        path = image.path if isinstance(image, LoadedImage) else image
        order.append(os.path.basename(path))
        nxt = sorted(str(p) for p in folder.iterdir() if os.path.basename(str(p)) > os.path.basename(path))
        if nxt:  # the next file is read on the other thread while this analysis is still running
            assert loaded.setdefault(nxt[0], threading.Event()).wait(10), f"{nxt[0]} not read ahead"
        return engine.analyze(AnalyzeRequest((image,), task))

    prefetch = Prefetcher(load=load)
    with Store(tmp_path / "s.db") as store:
        job = _job(store, folder)
        summary = BatchRunner(store, analyze, prefetch=prefetch).run(job.id)
        prefetch.close()
        assert summary.done == 4 and summary.errors == 1
        assert order == ["000.png", "001.png", "002.png", "003.png"]
        assert "000.png" not in threads  # nothing to overlap the first one with: the engine reads it itself
        assert all(threads[n].startswith("loupe-prefetch") for n in ("001.png", "002.png", "003.png"))
        assert [isinstance(g, LoadedImage) for g in got] == [False, True, True, False]  # the bad one as a path
        results = {os.path.basename(s.path): s.result for s in store.results(job.id)}
        assert "not an image" in results["003.png"].error
        assert results["001.png"].images[0].sha256 == file_identity(str(folder / "001.png"))[0]

        again = _job(store, folder)  # all cache hits: nothing is decoded, ahead or otherwise
        threads.clear()
        prefetch2 = Prefetcher(load=load)
        rerun = BatchRunner(store, analyze, prefetch=prefetch2).run(again.id)
        prefetch2.close()
        assert rerun.cached == 3 and not threads  # the bad file is tried again, by the engine (no read-ahead)
    assert not [t for t in threading.enumerate() if t.name.startswith("loupe-prefetch")]


def test_read_gives_the_identity_of_the_bytes_it_decoded(tmp_path):
    folder = make_images(tmp_path / "imgs", 1)
    path = str(folder / "000.png")
    r = read(path)
    assert r.image is not None and r.identity == file_identity(path)
    missing = read(str(tmp_path / "nope.png"))
    assert missing == type(missing)(None, None)
