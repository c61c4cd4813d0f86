import pytest

from config.testing import balance
from interviews.exceptions import GenerationFailed, SessionEnded
from interviews.generation import BankSource, Proposal
from interviews.models import Difficulty, Question, ServedQuestion
from interviews.services import answer_submit, question_next, session_end, session_start
from interviews.spec import QuestionSpec
from interviews.tests.fakes import CountingBankSource, ScriptedSource, failing
from ledger.exceptions import InsufficientTokens
from ledger.models import Hold, LedgerEntry
from ledger.selectors import account_problem_list


def test_a_question_costs_one_token_and_is_stored_with_its_debit(session, candidate):
    source = CountingBankSource()
    result = question_next(session=session, request_id="req-00001", source=source)
    served = result.served
    assert not result.replay
    assert source.calls == 1
    assert balance(candidate) == 2
    assert (served.position, served.cycle, served.topic, served.debit.kind) == (
        1,
        1,
        session.topic,
        LedgerEntry.Kind.DEBIT,
    )
    assert (served.debit.balance_before, served.debit.balance_after) == (3, 2)
    assert served.hold.status == Hold.Status.CAPTURED
    assert served.question.difficulty == "easy"  # the session's difficulty is preferred


def test_the_same_request_id_returns_the_same_question_without_charging(session, candidate):
    first = question_next(session=session, request_id="req-00001", source=BankSource())
    again = question_next(session=session, request_id="req-00001", source=BankSource())
    assert again.replay
    assert again.served.pk == first.served.pk
    assert balance(candidate) == 2


@pytest.mark.parametrize(
    "failure", [failing("timeout"), failing("server_error"), ConnectionError("refused")]
)
def test_a_failed_generation_charges_nothing(session, candidate, failure):
    with pytest.raises(type(failure)):
        question_next(session=session, request_id="req-00001", source=ScriptedSource(failure))
    assert balance(candidate) == 3
    assert Hold.objects.get().status == Hold.Status.RELEASED
    assert not ServedQuestion.objects.exists()
    assert account_problem_list() == []


def test_invalid_proposals_are_regenerated_for_free_a_bounded_number_of_times(
    session, candidate, settings
):
    settings.LLM_MAX_REGENERATIONS = 2
    source = ScriptedSource("", "x" * 1001, "A good question about hooks?")
    result = question_next(session=session, request_id="req-00001", source=source)
    assert source.calls == 3
    assert result.served.question.text == "A good question about hooks?"
    assert result.served.question.source == Question.Source.OPENAI
    assert result.served.question.model == "fake-model"
    assert balance(candidate) == 2


def test_giving_up_after_the_regenerations_charges_nothing(session, candidate, settings):
    settings.LLM_MAX_REGENERATIONS = 2
    source = ScriptedSource(default="")
    with pytest.raises(GenerationFailed):
        question_next(session=session, request_id="req-00001", source=source)
    assert source.calls == 3
    assert balance(candidate) == 3


def test_a_question_already_served_in_the_topic_is_regenerated(session, candidate):
    question_next(session=session, request_id="req-00001", source=ScriptedSource("What is JSX?"))
    source = ScriptedSource("what is  JSX", "What is the virtual DOM?")
    result = question_next(session=session, request_id="req-00002", source=source)
    assert source.calls == 2  # the normalised duplicate was refused
    assert result.served.question.text == "What is the virtual DOM?"
    assert balance(candidate) == 1


def test_the_pool_does_not_repeat_until_exhausted_then_recycles_and_records_it(
    make_user, topic, settings
):
    Question.objects.filter(topic=topic).exclude(
        pk__in=Question.objects.filter(topic=topic).values("pk")[:3]
    ).update(is_active=False)
    user = make_user(tokens=10)
    session = session_start(user=user, topic=topic, difficulty="hard")
    seen = [
        question_next(session=session, request_id=f"req-000{i}", source=BankSource()).served
        for i in range(1, 4)
    ]
    assert len({s.question_id for s in seen}) == 3
    assert {s.cycle for s in seen} == {1}
    assert {s.pool_reset_size for s in seen} == {None}

    fourth = question_next(session=session, request_id="req-0004", source=BankSource()).served
    assert fourth.cycle == 2
    assert fourth.question_id != seen[-1].question_id  # not the one just seen
    # The reset is recorded on the question that started the new pass, not in the ledger.
    assert fourth.pool_reset_size == 3
    assert "all 3 questions seen" in fourth.pool_reset_note
    assert fourth.debit.balance_delta == -1
    assert not LedgerEntry.objects.filter(balance_delta=0, held_delta=0).exists()
    assert balance(user) == 6  # the reset itself cost nothing
    assert account_problem_list() == []


def test_no_tokens_no_generation(make_user, topic):
    user = make_user(tokens=0)
    session = session_start(user=user, topic=topic)
    source = CountingBankSource()
    with pytest.raises(InsufficientTokens):
        question_next(session=session, request_id="req-00001", source=source)
    assert source.calls == 0


def test_an_ended_session_takes_no_more_questions(session, candidate):
    session_end(session=session)
    with pytest.raises(SessionEnded):
        question_next(session=session, request_id="req-00001", source=BankSource())
    assert balance(candidate) == 3


def test_answers_get_rubric_feedback_for_free(session, candidate):
    spec = QuestionSpec(
        text="Why do React lists need keys?",
        key_points=(
            "keys give list items a stable identity",
            "reconciliation matches elements by key",
            "array index keys break when items reorder",
        ),
        outline="Keys let React match items between renders.",
        difficulty=Difficulty.EASY,
    )
    proposal = Proposal(spec=spec, source="bank")
    served = question_next(
        session=session, request_id="req-00001", source=ScriptedSource(proposal)
    ).served
    answer = answer_submit(
        served=served,
        text=(
            "Keys give each list item a stable identity, so reconciliation can match the "
            "elements between renders instead of recreating them all."
        ),
    )
    assert answer.feedback_source == "rubric"
    assert answer.covered == list(spec.key_points[:2])
    assert answer.missed == list(spec.key_points[2:])
    assert answer.score == 7
    assert answer.outline == spec.outline
    assert balance(candidate) == 2  # feedback cost nothing


def test_a_hold_swept_while_generating_is_a_free_503(session, candidate):
    """The sweeper (or another tab's reserve) expired the hold under a slow generation."""
    from datetime import timedelta

    from django.utils import timezone

    from ledger.services import hold_expire_due

    class SlowSource(BankSource):
        def pick(self, *, session, pool):
            hold_expire_due(now=timezone.now() + timedelta(hours=1))
            return super().pick(session=session, pool=pool)

    with pytest.raises(GenerationFailed) as failed:
        question_next(session=session, request_id="req-00001", source=SlowSource())
    assert failed.value.reason == "expired"
    assert balance(candidate) == 3
    assert Hold.objects.get().status == Hold.Status.EXPIRED
    assert not ServedQuestion.objects.exists()
    assert account_problem_list() == []


def test_losing_a_question_to_a_concurrent_request_does_not_use_up_regenerations(
    session, candidate, settings
):
    """Another request took the proposed question first: propose again, without giving up."""
    from interviews.exceptions import PoolChanged
    from interviews.services import purchase as services

    settings.LLM_MAX_REGENERATIONS = 0
    real_store = services._store
    collisions = []

    def store(**kwargs):
        if len(collisions) < 3:
            collisions.append(1)
            raise PoolChanged("another request served this question meanwhile")
        return real_store(**kwargs)

    services._store = store
    try:
        served = question_next(session=session, request_id="req-00001", source=BankSource()).served
    finally:
        services._store = real_store
    assert served.position == 1
    assert len(collisions) == 3
    assert balance(candidate) == 2


def test_a_finished_request_replays_even_after_the_session_ended(session, candidate):
    first = question_next(session=session, request_id="req-00001", source=BankSource()).served
    session_end(session=session)
    again = question_next(session=session, request_id="req-00001", source=BankSource())
    assert again.replay
    assert again.served.pk == first.pk
    assert balance(candidate) == 2
