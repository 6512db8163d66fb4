"""Hybrid settings tables: a policy and a cloud config parse, and bad or secret-bearing ones are refused."""

from __future__ import annotations

import pytest
from loupe.core.errors import TaskError
from loupe.core.types import Status
from loupe.escalate.config import cloud_config_from_dict, policy_from_dict
from loupe.escalate.policy import Step


def test_policy_from_dict() -> None:
    policy = policy_from_dict(
        {
            "ladder": ["local@low", "local@high", "cloud"],
            "cloud": True,
            "thresholds": {"overall": 0.6, "fields": {"/label": 0.8}, "always": ["invalid"]},
            "budget": {"max_calls_per_job": 10, "max_spend_per_day": 2.5},
        }
    )
    assert policy.ladder == (Step("local", "low"), Step("local", "high"), Step("cloud", "low"))
    assert policy.thresholds.fields == {"/label": 0.8} and policy.thresholds.always == {Status.INVALID}
    assert policy.budget.max_calls_per_job == 10 and policy.cloud_enabled
    assert not policy_from_dict({}).cloud_enabled  # the cloud is off unless a task turns it on


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        ({"ladder": []}, "/ladder"),
        ({"thresholds": {"overall": "high"}}, "/thresholds/overall"),
        ({"thresholds": {"fields": {"label": 0.8}}}, "/thresholds/fields/label"),
        ({"thresholds": {"always": ["broken"]}}, "/thresholds/always"),
        ({"budget": {"max_calls_per_week": 3}}, "/budget/max_calls_per_week"),
        ({"budget": {"max_calls_per_job": -1}}, "/budget/max_calls_per_job"),
        ({"cloud": "yes"}, "/cloud"),
        ({"ladders": []}, "/ladders"),
    ],
)
def test_bad_policy_is_refused_by_pointer(raw: dict, pointer: str) -> None:
    with pytest.raises(TaskError) as info:
        policy_from_dict(raw)
    assert info.value.pointer == pointer


def test_cloud_config_refuses_keys_and_bad_values() -> None:
    config = cloud_config_from_dict({"preset": "ollama", "model": "llava", "enabled": True, "timeout_s": 10})
    assert config.resolved() == ("http://127.0.0.1:11434/v1", "llava") and config.enabled
    for raw, pointer in (
        ({"api_key": "sk-x"}, "/api_key"),
        ({"preset": "nope"}, "/preset"),
        ({"max_side": "big"}, "/max_side"),
        ({"color": 1}, "/color"),
        ({"response_format": "xml"}, "/response_format"),
    ):
        with pytest.raises(TaskError) as info:
            cloud_config_from_dict(raw)
        assert info.value.pointer == pointer
