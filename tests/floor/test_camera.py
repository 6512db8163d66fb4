"""The camera source through real OpenCV: a video file written with cv2.VideoWriter, an MJPEG stream over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from loupe.floor.sources.base import Backoff
from loupe.floor.sources.camera import CameraSource
from loupe.floor.sources.resolve import open_source

from tests.floor.conftest import write_video


def test_frames_from_a_video_file_then_the_end(tmp_path: Path) -> None:
    video = tmp_path / "line.avi"
    write_video(video)
    source = open_source(str(video), frames_dir=tmp_path / "frames", interval_s=0)
    assert isinstance(source, CameraSource)
    got = [source.next(5) for _ in range(5)]
    assert all(c is not None for c in got)
    levels = [int(cv2.imread(c.path).mean()) for c in got if c is not None]
    assert [round(v / 40) for v in levels] == [0, 1, 2, 3, 4]  # in order, each frame once
    assert source.next(1) is None
    assert source.health().state == "ended" and "5 frame(s)" in source.health().detail
    source.close()


def test_trigger_mode_grabs_only_when_triggered(tmp_path: Path) -> None:
    video = tmp_path / "line.avi"
    write_video(video, frames=3)
    source = CameraSource(str(video), tmp_path / "frames", trigger=True)
    assert source.next(0.3) is None and source.frames == 0
    threading.Timer(0.05, source.trigger).start()  # a PLC input from another thread
    got = source.next(5)
    assert got is not None and source.frames == 1 and Path(got.path).parent == tmp_path / "frames"
    source.close()


def test_reconnects_with_backoff_until_the_camera_appears(tmp_path: Path) -> None:
    video = tmp_path / "later.avi"
    source = CameraSource(str(video), tmp_path / "frames", interval_s=0, backoff=Backoff(first=0.1, cap=0.2))
    assert source.next(0.5) is None
    assert source.health().state == "reconnecting" and "cannot open" in source.health().detail
    assert source.backoff.failures >= 2  # it kept trying, backing off
    write_video(video, frames=2)
    got = source.next(10)
    assert got is not None and source.health().state == "ok"
    source.close()


class MjpegCamera:
    """An IP camera on 127.0.0.1: an endless multipart/x-mixed-replace MJPEG stream at /video.mjpg."""

    def __init__(self, port: int = 0) -> None:
        self.stop = threading.Event()
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while not cam.stop.is_set():
                    ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), (i * 30) % 255, dtype=np.uint8))
                    assert ok
                    try:
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            + str(len(jpg)).encode()
                            + b"\r\n\r\n"
                            + jpg.tobytes()
                            + b"\r\n"
                        )
                    except OSError:
                        return
                    i += 1
                    cam.stop.wait(0.02)  # ~50 fps, like a camera's frame clock

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"
        threading.Thread(target=self.server.serve_forever, name="test-mjpeg", daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mjpeg() -> Iterator[MjpegCamera]:
    cam = MjpegCamera()
    yield cam
    cam.close()


def test_an_http_mjpeg_stream_on_an_interval(mjpeg: MjpegCamera, tmp_path: Path) -> None:
    source = open_source(mjpeg.url, frames_dir=tmp_path / "frames", interval_s=0.1)
    try:
        got = [source.next(15) for _ in range(3)]
        assert all(c is not None for c in got), source.health()
        assert all(cv2.imread(c.path).shape == (48, 64, 3) for c in got if c is not None)
        assert source.health().state == "ok"
    finally:
        source.close()


def test_a_dropped_stream_reconnects_when_the_camera_returns(mjpeg: MjpegCamera, tmp_path: Path) -> None:
    source = CameraSource(mjpeg.url, tmp_path / "frames", interval_s=0.05, backoff=Backoff(first=0.1, cap=0.3))
    try:
        assert source.next(15) is not None
        port = mjpeg.server.server_address[1]
        mjpeg.close()  # the camera reboots; frames already buffered still come out first
        for _ in range(500):
            if source.next(1) is None:
                break
        assert source.health().state == "reconnecting"
        back = MjpegCamera(port)
        try:
            got = source.next(15)
            assert got is not None and source.health().state == "ok"
        finally:
            back.close()
    finally:
        source.close()
