"""/v1/analyze on the real server when its client leaves: the analysis is canceled, stored as canceled, and logged."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
from loupe.cli import SAMPLE
from loupe.serve.server import Running

from tests.serve.conftest import LONG, LONG_MAX, Canceled
from tests.serve.test_analyze_results import GAUGE, call
from tests.serve.test_streaming import long_body

LONG_ANALYSIS = {
    "image": str(SAMPLE),
    "schema": LONG,
    "instructions": "Describe the image at length.",
    "options": {"max_tokens": LONG_MAX},
}


def _analyze_then_give_up(server: Running) -> None:
    with httpx2.Client(timeout=httpx2.Timeout(60, read=0.25)) as http, pytest.raises(httpx2.ReadTimeout):
        http.post(server.url + "/v1/analyze", json=LONG_ANALYSIS)


def _stored(server: Running, record: logging.LogRecord) -> dict[str, Any]:
    """The stored row a canceled-request record names, as GET /v1/results shows it."""
    status, page = call(server, "/v1/results?status=error&limit=500")
    assert status == 200, page
    return next(r for r in page["data"] if r["id"] == record.result_id)  # type: ignore[attr-defined]


def test_a_client_that_times_out_cancels_the_analysis_and_the_store_says_so(
    long_server: Running, canceled: Canceled
) -> None:
    _analyze_then_give_up(long_server)
    [record] = canceled.wait()
    assert record.stop == "cancelled" and record.completion_tokens < LONG_MAX  # type: ignore[attr-defined]
    assert record.loupe_request == f"analyze result {record.result_id}"  # type: ignore[attr-defined]
    row = _stored(long_server, record)
    assert row["status"] == "error" and row["error"] == "cancelled" and row["data"] is None
    assert row["tokens"]["completion"] == record.completion_tokens < LONG_MAX  # type: ignore[attr-defined]
    assert row["job_id"] == record.job_id and row["images"][0]["path"] == str(SAMPLE)  # type: ignore[attr-defined]
    status, r = call(
        long_server,
        "/v1/analyze",
        {"image": str(SAMPLE), "schema": GAUGE, "instructions": "Read.", "options": {"max_tokens": 64}},
    )
    assert status == 200 and r["status"] == "ok", r  # the next request is served normally
    assert r["id"] > record.result_id  # type: ignore[attr-defined]
    assert len(canceled.records) == 1  # and a request that completes is not logged as canceled


def test_an_analysis_whose_client_left_while_it_waited_never_reaches_the_model(
    long_server: Running, canceled: Canceled
) -> None:
    url = long_server.url + "/v1/chat/completions"
    with httpx2.Client(timeout=60) as http, http.stream("POST", url, json=long_body(stream=True)) as busy:
        lines = busy.iter_lines()  # kept: dropping a half-read iterator closes the connection
        next(line for line in lines if line.startswith("data: "))  # the model is now busy with this stream
        _analyze_then_give_up(long_server)  # queued behind the stream, then given up on
    stream, queued = canceled.wait(2)  # the stream is canceled when closed; then the analysis is skipped
    assert stream.loupe_request.startswith("chatcmpl-")  # type: ignore[attr-defined]
    assert queued.stop == "cancelled" and queued.completion_tokens == 0  # type: ignore[attr-defined]
    row = _stored(long_server, queued)
    assert row["status"] == "error" and row["error"] == "cancelled"
    assert row["tokens"] == {"prompt": 0, "image": 0, "completion": 0}  # not even prefilled: it never reached the model
