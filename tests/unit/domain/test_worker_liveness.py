"""When a silent worker process may be judged dead (domain/worker_liveness.py)."""

from __future__ import annotations

from domain.worker_liveness import may_judge_liveness, reachable_since_after


def test_nobody_is_judged_while_redis_is_unreachable():
    assert may_judge_liveness(None, now=1_000.0, timeout_s=5.0) is False


def test_judging_waits_for_a_whole_timeout_of_answers():
    assert may_judge_liveness(100.0, now=104.9, timeout_s=5.0) is False
    assert may_judge_liveness(100.0, now=105.0, timeout_s=5.0) is True


def test_a_failed_call_ends_the_window():
    assert reachable_since_after(100.0, answered=False, started=200.0, finished=200.1, slow_after_s=1.0) is None


def test_a_prompt_answer_starts_the_window_at_the_call_or_extends_it():
    assert reachable_since_after(None, answered=True, started=200.0, finished=200.01, slow_after_s=1.0) == 200.0
    assert reachable_since_after(100.0, answered=True, started=200.0, finished=200.01, slow_after_s=1.0) == 100.0


def test_a_slow_answer_restarts_the_window_when_it_came():
    # Redis stalled for 3 s: no process could beat meanwhile, so their silence proves nothing yet.
    assert reachable_since_after(100.0, answered=True, started=200.0, finished=203.0, slow_after_s=1.0) == 203.0


def test_a_first_answer_counts_back_as_long_as_redis_says_it_has_been_up():
    assert (
        reachable_since_after(None, answered=True, started=200.0, finished=200.01, slow_after_s=1.0, up_for_s=30.0)
        == 170.0
    )
    # Once a window exists, Redis's word changes nothing; a slow first answer still restarts the window.
    assert (
        reachable_since_after(190.0, answered=True, started=200.0, finished=200.01, slow_after_s=1.0, up_for_s=30.0)
        == 190.0
    )
    assert (
        reachable_since_after(None, answered=True, started=200.0, finished=203.0, slow_after_s=1.0, up_for_s=30.0)
        == 203.0
    )
