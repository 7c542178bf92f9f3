"""The evaluation state machine: conditional transitions and their rules."""

import pytest

from leaderboard.models import (
    TRANSITIONS,
    Evaluation,
    EvaluationState,
    InvalidTransition,
    Submission,
)

S = EvaluationState


@pytest.fixture
def evaluation(demo_split, user):
    submission = Submission.objects.create(
        owner=user, split=demo_split, file="submissions/x.zip", sha256="0" * 64, size_bytes=1, method_name="m"
    )
    return Evaluation.objects.create(submission=submission)


def test_transition_applies_from_source_state(evaluation):
    assert Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.VALIDATING)
    evaluation.refresh_from_db()
    assert evaluation.state == S.VALIDATING


def test_transition_from_other_state_changes_nothing(evaluation):
    assert not Evaluation.objects.transition(evaluation.pk, S.QUEUED, S.SCORING)
    evaluation.refresh_from_db()
    assert evaluation.state == S.UPLOADED


def test_transition_writes_fields_in_same_update(evaluation):
    assert Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.VALIDATING, attempts=7)
    evaluation.refresh_from_db()
    assert evaluation.attempts == 7


def test_second_racer_loses(evaluation):
    first = Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.VALIDATING)
    second = Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.VALIDATING)
    assert first is True
    assert second is False


def test_forbidden_transition_raises(evaluation):
    with pytest.raises(InvalidTransition, match="cannot move from 'uploaded' to 'finished'"):
        Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.FINISHED)


def test_terminal_states_have_no_exit():
    for state in (S.FINISHED, S.FAILED, S.CANCELLED):
        assert TRANSITIONS[state] == frozenset()


def test_terminal_transition_sets_finished_at(evaluation):
    assert evaluation.finished_at is None
    assert Evaluation.objects.transition(evaluation.pk, S.UPLOADED, S.CANCELLED)
    evaluation.refresh_from_db()
    assert evaluation.finished_at is not None
    assert evaluation.is_terminal


def test_transition_from_set_of_states(evaluation):
    assert Evaluation.objects.transition(evaluation.pk, {S.UPLOADED, S.QUEUED}, S.FAILED, failure_kind="user")
    evaluation.refresh_from_db()
    assert evaluation.state == S.FAILED
    assert evaluation.failure_kind == "user"


def test_current_is_latest_evaluation(evaluation):
    newer = Evaluation.objects.create(submission=evaluation.submission)
    assert list(Evaluation.objects.current()) == [newer]
