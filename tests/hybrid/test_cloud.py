"""The cloud backend against a real HTTP server on 127.0.0.1: answers, faults, privacy and the audit trail."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.cloud import CloudBackend, CloudConfig, encode_image, parse_completion
from loupe.core.errors import BackendError
from loupe.core.images.load import LoadedImage, load_image
from loupe.core.types import Result, Status
from loupe.escalate.audit import audit_rows, totals
from loupe.store.sqlite import Store
from PIL import Image

from tests.hybrid.conftest import KEY, TASK
from tests.hybrid.stub_server import Reply, StubCloud, completion, error
from tests.noise import noise_image


def _image(tmp_path: Path, size: tuple[int, int] = (200, 120)) -> LoadedImage:
    path = tmp_path / "in.png"
    noise_image(size, 1).save(path)
    return load_image(path)


def _run(backend: CloudBackend, img: LoadedImage) -> Result:
    with Engine(backend) as engine:
        return engine.analyze(AnalyzeRequest((img,), TASK))


def _sent_images(body: dict) -> list[bytes]:
    parts = body["messages"][0]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    return [base64.b64decode(u.split(",", 1)[1]) for u in urls]


def test_structured_answer_is_ok_and_audited(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], store: Store, tmp_path: Path
) -> None:
    stub.script = [completion('{"n": 7}', prompt_tokens=1000, completion_tokens=10)]
    img = _image(tmp_path)
    result = _run(make_cloud(), img)
    assert result.status is Status.OK and result.data == {"n": 7} and result.backend == "cloud"
    (req,) = stub.received
    body = req.json
    assert req.path == "/v1/chat/completions" and body["model"] == "stub-model"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "loupe_result", "schema": TASK.schema, "strict": True},
    }
    assert req.headers["authorization"] == f"Bearer {KEY}"
    texts = [p["text"] for p in body["messages"][0]["content"] if p["type"] == "text"]
    assert "img_01: " in texts[0] and "<__media__>" not in "".join(texts)
    (row,) = audit_rows(store)
    assert row["destination"] == stub.base_url.split("/")[2] and row["status"] == 200
    assert row["bytes_out"] == len(req.body)
    assert row["bytes_in"] > 0 and row["prompt_tokens"] == 1000 and row["completion_tokens"] == 10
    assert row["cost_usd"] == pytest.approx((1000 * 1.0 + 10 * 4.0) / 1e6)
    (sent,) = _sent_images(body)
    assert row["image_sha256"] == [hashlib.sha256(sent).hexdigest()]
    assert totals([row])["requests"] == 1 and row["fields"] == ["n"]


def test_preset_without_json_schema_sends_no_response_format(
    stub: StubCloud, tmp_path: Path, make_cloud: Callable[..., CloudBackend]
) -> None:
    stub.script = [completion('{"n": 8}')]
    result = _run(make_cloud(preset="anthropic"), _image(tmp_path))
    assert result.status is Status.OK and "response_format" not in stub.received[0].json


def test_429_with_retry_after_then_success(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], sleeps: list[float], store: Store, tmp_path: Path
) -> None:
    stub.script = [error(429, retry_after="7"), completion('{"n": 1}')]
    result = _run(make_cloud(), _image(tmp_path))
    assert result.status is Status.OK and sleeps == [7.0]
    assert [r["status"] for r in audit_rows(store)] == [429, 200]


def test_retry_after_longer_than_allowed_gives_up_at_once(
    stub: StubCloud, sleeps: list[float], make_cloud: Callable[..., CloudBackend], tmp_path: Path
) -> None:
    stub.script = [error(429, retry_after="3600")]
    result = _run(make_cloud(backoff_max_s=30), _image(tmp_path))
    assert result.status is Status.ERROR and "asks to wait 3600 s" in (result.error or "")
    assert sleeps == [] and len(stub.received) == 1


def test_500s_exhaust_retries_with_backoff_into_an_error_result(
    stub: StubCloud, sleeps: list[float], make_cloud: Callable[..., CloudBackend], tmp_path: Path
) -> None:
    stub.script = [error(500)]
    result = _run(make_cloud(max_retries=3, backoff_s=0.5), _image(tmp_path))
    assert result.status is Status.ERROR and "failed after 4 attempts: HTTP 500" in (result.error or "")
    assert len(stub.received) == 4 and sleeps == [0.5, 1.0, 2.0]  # exponential (jitter injected as 0)


def test_non_retryable_4xx_fails_at_once(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], tmp_path: Path
) -> None:
    stub.script = [error(401)]
    result = _run(make_cloud(), _image(tmp_path))
    assert result.status is Status.ERROR and "HTTP 401" in (result.error or "") and len(stub.received) == 1
    assert KEY not in (result.error or "")


def test_timeout_is_a_clean_error(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], store: Store, tmp_path: Path
) -> None:
    stub.script = [Reply(hang=True)]
    result = _run(make_cloud(timeout_s=0.3, max_retries=1), _image(tmp_path))
    assert result.status is Status.ERROR and "timed out" in (result.error or "")
    assert len(stub.received) == 2 and [r["status"] for r in audit_rows(store)] == ["timeout", "timeout"]


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"choices": []}', b'{"no": "choices"}', b"\xff\xfe"])
def test_garbage_body_is_a_backend_error_not_a_crash(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], tmp_path: Path, body: bytes
) -> None:
    stub.script = [Reply(200, body, (("Content-Type", "application/json"),))]
    result = _run(make_cloud(), _image(tmp_path))
    assert result.status is Status.ERROR and "not a chat completion" in (result.error or "")
    with pytest.raises(BackendError):
        parse_completion(body)


def test_refusal_maps_to_refused(stub: StubCloud, make_cloud: Callable[..., CloudBackend], tmp_path: Path) -> None:
    stub.script = [completion(None, refusal="I can't help with that.")]
    result = _run(make_cloud(), _image(tmp_path))
    assert result.status is Status.REFUSED and "can't help" in (result.error or "")


def test_length_maps_to_truncated(stub: StubCloud, make_cloud: Callable[..., CloudBackend], tmp_path: Path) -> None:
    stub.script = [completion('{"n": ', finish="length")]
    result = _run(make_cloud(), _image(tmp_path))
    assert result.status is Status.TRUNCATED


def test_schema_violating_reply_is_retried_once_then_invalid(
    stub: StubCloud, tmp_path: Path, make_cloud: Callable[..., CloudBackend]
) -> None:
    stub.script = [completion('{"n": 42}')]
    result = _run(make_cloud(), _image(tmp_path))
    assert result.status is Status.INVALID and result.attempts == 2 and len(stub.received) == 2


def test_exif_and_gps_never_leave_and_images_are_downscaled(
    stub: StubCloud, tmp_path: Path, make_cloud: Callable[..., CloudBackend]
) -> None:
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}  # GPS IFD
    src = noise_image((400, 300), 2)
    path = tmp_path / "gps.jpg"
    src.save(path, exif=exif.tobytes(), icc_profile=b"\0" * 128)
    raw = Image.open(path)
    assert raw.getexif().get(0x010F) == "SecretCam" and raw.info.get("exif")  # the input really has them
    img = LoadedImage(str(path), raw.convert("RGB"), "0" * 64, "JPEG", ())
    img.image.info.update(raw.info)  # make sure metadata rides along on the PIL image handed to the backend
    for fmt in ("PNG", "JPEG"):
        stub.received.clear()
        stub.script = [completion('{"n": 3}')]
        assert _run(make_cloud(image_format=fmt, max_side=64), img).status is Status.OK
        (sent,) = _sent_images(stub.received[0].json)
        assert b"Exif" not in sent and b"SecretCam" not in sent and b"ICC_PROFILE" not in sent
        got = Image.open(io.BytesIO(sent))
        assert got.format == fmt and len(got.getexif()) == 0 and "exif" not in got.info
        assert "icc_profile" not in got.info and max(got.size) == 64


def test_encode_image_keeps_pixels_only() -> None:
    img = Image.new("RGBA", (10, 5), (1, 2, 3, 4))
    img.info["exif"] = b"Exif\0\0junk"
    out = Image.open(io.BytesIO(encode_image(img, 100)))
    assert out.size == (10, 5) and out.mode == "RGB" and "exif" not in out.info


def test_disabled_cloud_sends_nothing(
    stub: StubCloud, make_cloud: Callable[..., CloudBackend], store: Store, tmp_path: Path
) -> None:
    result = _run(make_cloud(enabled=False), _image(tmp_path))
    assert result.status is Status.ERROR and "disabled" in (result.error or "")
    assert stub.received == [] and audit_rows(store) == []


def test_key_never_reaches_store_or_logs(
    stub: StubCloud,
    make_cloud: Callable[..., CloudBackend],
    store: Store,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    stub.script = [error(429, retry_after="0"), completion('{"n": 2}')]
    assert _run(make_cloud(), _image(tmp_path)).status is Status.OK
    store.close()
    for f in tmp_path.glob("loupe.db*"):
        assert KEY.encode() not in f.read_bytes()
    assert KEY not in caplog.text
    assert KEY not in repr(make_cloud()) and KEY not in str(make_cloud().__dict__.get("config"))
    assert KEY not in json.dumps(CloudConfig().__dict__)


def test_presets_resolve() -> None:
    assert CloudConfig(preset="gemini").resolved()[0].startswith("https://generativelanguage.googleapis.com")
    assert CloudConfig(preset="ollama", model="llava").resolved() == ("http://127.0.0.1:11434/v1", "llava")
    with pytest.raises(BackendError):
        CloudConfig(preset="nope").resolved()


def test_llama_cpp_python_preset_sends_json_object_with_the_schema(
    stub: StubCloud, tmp_path: Path, make_cloud: Callable[..., CloudBackend]
) -> None:
    stub.script = [completion('{"n": 8}')]
    assert _run(make_cloud(preset="llama_cpp_python"), _image(tmp_path)).status is Status.OK
    assert stub.received[0].json["response_format"] == {"type": "json_object", "schema": TASK.schema}
    stub.script = [completion('{"n": 9}')]
    assert _run(make_cloud(preset="openai", response_format="none"), _image(tmp_path)).status is Status.OK
    assert "response_format" not in stub.received[1].json
    with pytest.raises(BackendError, match="unknown response_format"):
        CloudConfig(response_format="xml").schema_style()
