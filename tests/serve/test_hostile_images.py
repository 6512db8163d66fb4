"""/v1/analyze on the real server with every file of the hostile corpus (tests/hostile_images.py) as a data URL,
most of them declared as PNG: each is a 4xx or an `error` result within 2 s, never a 500, and the server goes on."""

from __future__ import annotations

import base64
import time

from loupe.serve.server import Running

from tests.hostile_images import corpus
from tests.serve.test_analyze_results import GAUGE, call


def test_hostile_images_are_refused_one_by_one_and_good_ones_still_analyzed(server: Running, tmp_path) -> None:
    good, bad = corpus(tmp_path)
    body = {"schema": GAUGE, "instructions": "Read the gauge.", "options": {"max_tokens": 16}}
    for path in bad:
        url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        t0 = time.monotonic()
        status, r = call(server, "/v1/analyze", {**body, "image": url})
        assert time.monotonic() - t0 < 2.0, path.name
        assert status != 500 and "Traceback" not in str(r), (path.name, status, r)
        if status == 200:
            assert r["status"] in ("error", "ok", "truncated", "invalid"), r  # a few bit flips still decode
        else:
            assert 400 <= status < 500 and "\n" not in str(r.get("error", r)), (path.name, status, r)
    for path in good:
        url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        status, r = call(server, "/v1/analyze", {**body, "image": url})
        assert status == 200 and r["status"] != "error", r
