"""Images sent to the API: `data:` URLs decoded in memory, or (for /v1/analyze) a path on this machine."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace

from loupe.core.errors import ImageError
from loupe.core.images.load import MAX_FILE_BYTES, LoadedImage, declared_pixels, decode_image, load_image
from loupe.serve.config import ServeConfig
from loupe.serve.errors import ApiError, bad_request
from loupe.serve.limits import PixelBudget

_DATA_URL = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.IGNORECASE
)


def is_data_url(value: str) -> bool:
    """True when `value` starts like a `data:` URL."""
    return value[:5].lower() == "data:"


def _decode(data: bytes, name: str, budget: PixelBudget | None, held: list[int] | None) -> LoadedImage:
    """Decode once `budget` has room for the pixels the header declares; what was taken is appended to `held`
    (the caller gives it back when the request is answered)."""
    if budget is not None and held is not None:
        try:
            held.append(budget.take(declared_pixels(data)))
        except TimeoutError as exc:
            raise ApiError(
                429, f"the server is busy decoding other images ({exc}); retry later", code="model_busy"
            ) from None
    return decode_image(data, name)


def decode_data_url(
    url: str, param: str, budget: PixelBudget | None = None, held: list[int] | None = None
) -> LoadedImage:
    """The image in a base64 `data:` URL; a malformed URL or undecodable image is a 400 naming `param`."""
    m = _DATA_URL.match(url)
    if m is None or not m.group("b64"):
        raise bad_request(f"{param}: expected a base64 data URL like data:image/png;base64,...", param=param)
    payload = url[m.end() :]
    if len(payload) > MAX_FILE_BYTES * 4 // 3 + 4:
        raise bad_request(f"{param}: the image is over the {MAX_FILE_BYTES // 2**20} MiB limit", param=param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{param}: the data URL's base64 payload is not valid base64", param=param) from None
    mime = m.group("mime") or "application/octet-stream"
    try:
        image = _decode(data, f"data:{mime}", budget, held)
    except ImageError as exc:
        raise bad_request(f"{param}: {exc}", param=param, code="invalid_image") from None
    return replace(image, path=f"data:{mime};sha256={image.sha256[:16]}")


def read_image(
    value: str,
    param: str,
    *,
    config: ServeConfig | None,
    budget: PixelBudget | None = None,
    held: list[int] | None = None,
) -> LoadedImage:
    """A data URL, or a path under the server's --allow-path roots (`config`; None: paths never); http(s) URLs are
    refused (no network). A path outside the roots gets one answer, whether or not anything is there."""
    if is_data_url(value):
        return decode_data_url(value, param, budget, held)
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
        raise bad_request(
            f"{param}: Loupe never fetches URLs; send the image as a base64 data URL",
            param=param,
            code="url_not_supported",
        )
    if config is None:
        raise bad_request(
            f"{param}: expected a base64 data URL (image paths are accepted only by /v1/analyze)", param=param
        )
    path = config.allowed_path(value)
    if path is None:
        raise path_not_allowed(param)
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_FILE_BYTES:
            raise ImageError(value, f"file is {size >> 20} MiB, over the {MAX_FILE_BYTES >> 20} MiB limit")
        if not size:
            return load_image(path)  # missing, not a file, or empty: load_image says which
        return replace(_decode(path.read_bytes(), str(path), budget, held), path=value)
    except OSError as exc:
        raise bad_request(f"{param}: cannot read {value} ({exc.strerror})", param=param, code="invalid_image") from None
    except ImageError as exc:
        raise bad_request(f"{param}: {exc}", param=param, code="invalid_image") from None


def path_not_allowed(param: str) -> Exception:
    """The one answer for a path outside the allowed roots: it says nothing about what is or is not there."""
    return bad_request(
        f"{param}: this server reads files only under the roots its operator allowed "
        "(loupe serve --allow-path DIR); send the content instead",
        param=param,
        code="path_not_allowed",
    )
