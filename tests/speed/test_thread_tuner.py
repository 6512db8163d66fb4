"""Decode threads chosen from measured token times: the decision rule on given times, then the real llama.cpp
backend switching threads mid-answer without changing the answer."""

from __future__ import annotations

import llama_cpp
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.thread_tuner import ThreadTuner
from loupe.core.tasks import builtin_task

QUIET = {1: 0.0126, 2: 0.0093}  # s/token measured on the 2-core VM, nothing else running
BUSY = {1: 0.0147, 2: 0.0508}  # the same with another program keeping one core busy


def _run(tuner: ThreadTuner, speed: dict[int, float], tokens: int) -> list[int]:
    used = []
    for _ in range(tokens):
        n = tuner.next_threads()
        used.append(n)
        tuner.record(n, speed[n])
    return used


def test_on_a_busy_machine_it_moves_to_fewer_threads_after_one_trial():
    tuner = ThreadTuner(2, window=4, every=96)
    used = _run(tuner, BUSY, 12)
    assert used[:4] == [2] * 4 and used[4:8] == [1] * 4  # one window each, then the faster
    assert tuner.current == 1 and used[8:] == [1] * 4


def test_on_a_quiet_machine_it_stays_and_tries_again_less_and_less_often():
    tuner = ThreadTuner(2, window=4, every=20, max_every=60)
    used = _run(tuner, QUIET, 200)
    assert tuner.current == 2
    assert used[:4] == [2] * 4 and used[4:8] == [1] * 4  # the first trial
    # each lost trial doubles the gap from 20: 40, then 60 (the cap), 60: trials at tokens 48, 112, 176
    trials = [i for i in range(8, 200) if used[i] == 1 and used[i - 1] == 2]
    assert trials == [48, 112, 176]
    assert all(used[i : i + 4] == [1] * 4 for i in trials) and used.count(1) == 16


def test_when_the_load_goes_away_it_goes_back_up():
    tuner = ThreadTuner(2, window=4, every=8)
    _run(tuner, BUSY, 12)
    assert tuner.current == 1
    _run(tuner, QUIET, 40)
    assert tuner.current == 2


def test_tokens_suddenly_slower_bring_the_next_trial_forward():
    tuner = ThreadTuner(2, window=4, every=20, max_every=60)
    _run(tuner, QUIET, 150)  # the gap has grown to its cap of 60 steps
    assert tuner.current == 2
    used = _run(tuner, BUSY, 16)
    # the first window at the busy speed (1.5x the best seen) triggers a trial at once, which 1 thread wins
    assert used[4:8] == [1] * 4 or used[:4] == [1] * 4
    assert tuner.current == 1 and used[-4:] == [1] * 4


def test_a_machine_that_stays_slower_is_not_probed_every_window():
    tuner = ThreadTuner(2, window=4, every=20, max_every=60)
    _run(tuner, QUIET, 150)
    slower = {1: 0.030, 2: 0.020}  # everything 2x slower (a slower clock), 2 threads still best
    used = _run(tuner, slower, 120)
    assert tuner.current == 2
    assert used.count(1) <= 3 * 4  # one triggered trial, then the usual gaps (60 at most), not one per window


def test_a_small_difference_does_not_switch():
    tuner = ThreadTuner(2, window=4, every=96, margin=0.85)
    _run(tuner, {1: 0.0095, 2: 0.0100}, 12)  # 5 % faster: within the noise
    assert tuner.current == 2


def test_one_thread_has_nothing_to_try():
    tuner = ThreadTuner(1, window=1, every=1)
    assert set(_run(tuner, {1: 0.01}, 10)) == {1}
    with pytest.raises(ValueError):
        ThreadTuner(0)


def test_more_cores_try_half_and_double():
    tuner = ThreadTuner(8, window=2, every=2)
    assert _run(tuner, {8: 0.02, 4: 0.01, 2: 0.03}, 4) == [8, 8, 4, 4]
    assert tuner.current == 4
    nxt = _run(tuner, {8: 0.02, 4: 0.01, 2: 0.03}, 8)
    assert set(nxt) == {4, 2, 8} and tuner.current == 4  # tried both neighbours, neither faster


def test_the_backend_switches_threads_mid_answer_and_the_answer_is_the_same(tiny_models, picture, monkeypatch):
    model = tiny_models["smolvlm"]
    task = builtin_task("describe").with_options(max_tokens=40, retries=0, temperature=0.0)
    calls: list[int] = []
    real = llama_cpp.llama_set_n_threads

    def spy(ctx, n_threads, n_threads_batch):  # records, then calls llama.cpp for real
        calls.append(int(n_threads))
        return real(ctx, n_threads, n_threads_batch)

    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", spy)
    answers = {}
    for adapt in (False, True):
        backend = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=2, adapt_threads=adapt)
        if adapt:
            backend._tuner = ThreadTuner(2, window=1, every=1)  # a trial every other token
        with Engine(backend) as engine:
            result = engine.analyze(AnalyzeRequest((str(picture),), task))
        answers[adapt] = (result.raw, [round(c, 6) for c in result.confidence.values()])
        if adapt:
            assert result.tokens.completion >= 6
            assert backend._tuner is not None and backend._tuner.current in (1, 2)
    assert 1 in calls and 2 in calls  # it ran tokens on one thread and went back to two
    assert answers[True] == answers[False]


def test_a_thread_count_the_user_chose_is_kept_and_the_default_adapts(tiny_models):
    from loupe.core.hardware import default_threads

    model = tiny_models["smolvlm"]
    fixed = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=2)
    default = LlamaCppBackend(model.text_path, model.mmproj_path)
    try:
        assert fixed._tuner is None
        assert (default._tuner is not None) == (default_threads() > 1)
    finally:
        fixed.close()
        default.close()
