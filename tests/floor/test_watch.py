"""The watched folder on the real file system: slow writers, atomic renames, the folder vanishing, move and mark."""

from __future__ import annotations

import os
import threading
from contextlib import closing
from pathlib import Path

from loupe.floor.sources.base import Backoff, Capture
from loupe.floor.sources.watch import WatchSource

from tests.floor.conftest import png_bytes


def next_name(source: WatchSource) -> str:
    """The name of the next file the source hands out (the test fails if none comes within 10 s)."""
    got = source.next(10)
    assert got is not None
    return Path(got.path).name


class SlowWriter(threading.Thread):
    """Writes a file in chunks; after each chunk it sets `wrote` and waits for `go` (so the test decides the pace)."""

    def __init__(self, path: Path, data: bytes, chunks: int) -> None:
        super().__init__(name="slow-writer")
        self.path, self.data, self.chunks = path, data, chunks
        self.wrote = threading.Event()
        self.go = threading.Event()

    def run(self) -> None:
        step = -(-len(self.data) // self.chunks)
        with open(self.path, "wb") as f:
            for i in range(0, len(self.data), step):
                f.write(self.data[i : i + step])
                f.flush()
                self.wrote.set()
                assert self.go.wait(20)
                self.go.clear()

    def next_chunk(self) -> None:
        assert self.wrote.wait(20)
        self.wrote.clear()
        self.go.set()


def test_a_file_written_slowly_is_handed_out_only_once_complete(tmp_path: Path) -> None:
    with closing(WatchSource(tmp_path, settle_s=0.1)) as source:
        assert source.next(0.2) is None and source.health().state == "ok"
        data = png_bytes(1, (200, 150))
        writer = SlowWriter(tmp_path / "part.png", data, chunks=4)
        writer.start()
        for _ in range(3):
            assert writer.wrote.wait(20)
            # quiet for longer than settle_s, but the writer still holds it open: not ready
            assert source.next(0.4) is None
            writer.next_chunk()
        writer.next_chunk()  # the last chunk, then close
        writer.join(20)
        got = source.next(10)
        assert got is not None and got.path == str(tmp_path / "part.png")
        assert Path(got.path).read_bytes() == data
        assert source.next(0.2) is None  # handed out once


def test_polling_waits_until_the_file_is_quiet(tmp_path: Path) -> None:
    with closing(WatchSource(tmp_path, settle_s=1.0, poll=True)) as source:
        assert source.next(0.1) is None
        data = png_bytes(2)
        target = tmp_path / "slow.png"
        with open(target, "wb") as f:
            for i in range(0, len(data), len(data) // 3 + 1):
                f.write(data[i : i + len(data) // 3 + 1])
                f.flush()
                assert source.next(0.2) is None  # still changing
        got = source.next(10)
        assert got is not None and Path(got.path).stat().st_size == len(data)


def test_atomic_rename_is_ready_at_once_and_hidden_or_other_files_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    # a rename needs no settling; anything else would wait 30 s here
    with closing(WatchSource(folder, settle_s=30)) as source:
        assert source.next(0.2) is None
        (folder / ".staged.png").write_bytes(png_bytes(3))  # hidden while being written: ignored
        (folder / "notes.txt").write_text("not an image")
        os.rename(folder / ".staged.png", folder / "ready.png")
        assert next_name(source) == "ready.png"
        assert source.next(0.3) is None


def test_a_file_moved_in_from_elsewhere_is_taken_once_quiet(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with closing(WatchSource(folder, settle_s=0.3)) as source:
        assert source.next(0.1) is None
        (tmp_path / "staged.png").write_bytes(png_bytes(10))
        os.rename(tmp_path / "staged.png", folder / "moved.png")  # inotify sees only a creation, never a close
        assert next_name(source) == "moved.png"


def test_move_to_processed_and_names_never_clash(tmp_path: Path) -> None:
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "a.png").write_bytes(b"older")
    (tmp_path / "a.png").write_bytes(png_bytes(4))
    with closing(WatchSource(tmp_path, settle_s=0.05)) as source:
        got = source.next(10)
        assert got is not None
        final = source.final_path(got)
        assert final == str(tmp_path / "processed" / "a-2.png")
        assert source.finish(got) == final and Path(final).read_bytes() == png_bytes(4)
        assert (tmp_path / "processed" / "a.png").read_bytes() == b"older"


def test_mark_leaves_the_file_and_a_restart_skips_it(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes(5))
    first = WatchSource(tmp_path, after="mark", settle_s=0.05)
    got = first.next(10)
    assert got is not None
    assert first.finish(got) == str(tmp_path / "a.png")
    first.close()
    assert (tmp_path / ".a.png.loupe-done").exists() and (tmp_path / "a.png").exists()
    (tmp_path / "b.png").write_bytes(png_bytes(6))
    with closing(WatchSource(tmp_path, after="mark", settle_s=0.05)) as second:
        assert next_name(second) == "b.png"
        assert second.next(0.3) is None


def test_the_folder_disappearing_and_coming_back(tmp_path: Path) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    with closing(WatchSource(folder, settle_s=0.05, backoff=Backoff(first=0.1, cap=0.4))) as source:
        (folder / "one.png").write_bytes(png_bytes(7))
        first = source.next(10)
        assert first is not None
        source.finish(first)
        os.rename(folder, tmp_path / "share-unmounted")  # the share goes away
        assert source.next(1.0) is None
        assert source.health().state == "reconnecting" and "not there" in source.health().detail
        away = tmp_path / "share-unmounted"
        (away / "two.png").write_bytes(png_bytes(8))  # written while Loupe could not see it
        os.rename(away, folder)  # ... and comes back
        assert next_name(source) == "two.png"
        assert source.health().state == "ok"
        (folder / "three.png").write_bytes(png_bytes(9))  # and new files are seen through the new watch
        assert next_name(source) == "three.png"
    assert isinstance(first, Capture)
