"""Images sent to the API: `data:` URLs decoded in memory, or (for /v1/analyze) a path on this machine."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace

from engine.errors import ImageError
from engine.images.load import MAX_FILE_BYTES, LoadedImage, decode_image, load_image
from engine.serve.config import ServeConfig
from engine.serve.errors import bad_request

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


def is_data_url(value: str) -> bool:
    """True when `value` starts like a `data:` URL."""
    return value[:5].lower() == "data:"


def decode_data_url(url: str, param: str) -> LoadedImage:
    """The image in a base64 `data:` URL; a malformed URL or undecodable image is a 400 naming `param`."""
    m = _DATA_URL.match(url)
    if m is None or not m.group("b64"):
        raise bad_request(f"{param}: expected a base64 data URL like data:image/png;base64,...", param=param)
    payload = url[m.end():]
    if len(payload) > MAX_FILE_BYTES * 4 // 3 + 4:
        raise bad_request(f"{param}: the image is over the {MAX_FILE_BYTES // 2**20} MiB limit", param=param)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{param}: the data URL's base64 payload is not valid base64", param=param) from None
    mime = m.group("mime") or "application/octet-stream"
    try:
        image = decode_image(data, f"data:{mime}")
    except ImageError as exc:
        raise bad_request(f"{param}: {exc}", param=param, code="invalid_image") from None
    return replace(image, path=f"data:{mime};sha256={image.sha256[:16]}")


def read_image(value: str, param: str, *, config: ServeConfig | None) -> LoadedImage:
    """A data URL, or a path under the server's --allow-path roots (`config`; None: paths never); http(s) URLs are
    refused (no network). A path outside the roots gets one answer, whether or not anything is there."""
    if is_data_url(value):
        return decode_data_url(value, param)
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
        raise bad_request(f"{param}: Loupe never fetches URLs; send the image as a base64 data URL", param=param,
                          code="url_not_supported")
    if config is None:
        raise bad_request(f"{param}: expected a base64 data URL (image paths are accepted only by /v1/analyze)",
                          param=param)
    path = config.allowed_path(value)
    if path is None:
        raise path_not_allowed(param)
    try:
        return load_image(path)
    except ImageError as exc:
        raise bad_request(f"{param}: {exc}", param=param, code="invalid_image") from None


def path_not_allowed(param: str) -> Exception:
    """The one answer for a path outside the allowed roots: it says nothing about what is or is not there."""
    return bad_request(f"{param}: this server reads files only under the roots its operator allowed "
                       "(loupe serve --allow-path DIR); send the content instead", param=param, code="path_not_allowed")
