"""Property-based checks of the published /openapi.json against the real server (schemathesis, bounded).

schemathesis's own pytest plugin (`parametrize`/`from_fixture`) does not run under this pytest, so each
operation's Hypothesis strategy is drawn directly; every drawn case is sent and validated with the default
checks (no server errors, status codes / content types / bodies as documented, invalid data refused).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from loupe.serve.server import Running  # noqa: E402

from tests.serve.conftest import MODEL  # noqa: E402

TOKEN = "schemathesis-token-0123456789"
OPERATIONS = ["POST /v1/chat/completions", "POST /v1/analyze", "GET /v1/results", "GET /v1/models"]


@pytest.fixture(scope="module")
def capped_server(start_server) -> Iterator[Running]:
    """A token-guarded server whose chat completions take at most 8 tokens, so generated requests stay quick."""
    with start_server(max_tokens_cap=8, token=TOKEN) as running:
        yield running


@pytest.mark.parametrize("mode", ["positive", "negative"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_api_conforms_to_its_openapi(capped_server: Running, label: str, mode: str) -> None:
    schema = schemathesis.openapi.from_url(capped_server.url + "/openapi.json")
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in /openapi.json"
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def check(case) -> None:
        if mode == "positive" and isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = MODEL  # reach the model, not only the 404 for a name this server does not serve
            case.body["response_format"] = {"type": "json_object"}
        # a schema-valid body can still be refused on meaning (an `image` string that is no image, a model
        # name this server does not serve): those 400/404s are right, so positive_data_acceptance is left out
        response = case.call_and_validate(
            base_url=capped_server.url,
            timeout=60,
            headers={"Authorization": f"Bearer {TOKEN}"},
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
        seen.append(response.status_code)

    check()
    assert seen and all(code < 500 for code in seen), seen
