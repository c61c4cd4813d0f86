"""Mock interviews: questions one at a time up to the chosen length, each paid as received, an
answer deadline with a short grace, no feedback until the end, then a report written once whose
numbers are the stored answers'."""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse

from config.testing import balance
from interviews.exceptions import AnswerRefused, MockQuestionRefused, SessionEnded
from interviews.models import MOCK_GRACE_SECONDS, Answer, InterviewSession, ServedQuestion
from interviews.report import markdown_escape
from interviews.selectors import session_report_get
from interviews.services import mock_answer_submit, question_next, report_build, session_start
from interviews.tests.fake_openai import feedback_payload, ok

GOOD_ANSWER = (
    "useEffect runs after render; its dependency array decides when it runs again, and the "
    "cleanup function runs before the next effect and on unmount, so subscriptions are undone."
)


@pytest.fixture
def mock_session(candidate, topic):
    return session_start(
        user=candidate, topic=topic, difficulty="easy", mode="mock", length=3, minutes=5
    )


def ask(session, n: int) -> ServedQuestion:
    return question_next(session=session, request_id=f"mock-req-{n:04d}").served


def age(served: ServedQuestion, seconds: float) -> None:
    """As if `served` had been served `seconds` ago."""
    served.served_at -= timedelta(seconds=seconds)
    ServedQuestion.objects.filter(pk=served.pk).update(served_at=served.served_at)


# --- services ------------------------------------------------------------------------------------


def test_a_mock_interview_takes_its_length_one_question_at_a_time(mock_session, candidate):
    first = ask(mock_session, 1)
    with pytest.raises(MockQuestionRefused, match="Answer the current question first"):
        ask(mock_session, 2)
    assert balance(candidate) == 2  # the refusal charged nothing
    assert not mock_answer_submit(served=first, text=GOOD_ANSWER).finished
    second = ask(mock_session, 3)
    mock_answer_submit(served=second, text="")
    third = ask(mock_session, 4)
    assert balance(candidate) == 0
    result = mock_answer_submit(served=third, text="Some answer about effects.")
    assert result.finished
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    assert mock_session.is_ended
    with pytest.raises(SessionEnded):
        ask(mock_session, 5)
    assert ServedQuestion.objects.filter(session=mock_session).count() == 3
    call_command("ledger_verify")


def test_past_its_length_a_question_is_refused_and_not_charged(make_user, topic):
    user = make_user(tokens=5)
    session = session_start(user=user, topic=topic, mode="mock", length=3, minutes=3)
    for n in range(3):
        mock_answer_submit(served=ask(session, n), text=GOOD_ANSWER)
    with pytest.raises(MockQuestionRefused, match="has had its 3 questions"):
        ask(session, 9)
    assert balance(user) == 2


def test_a_question_whose_time_ran_out_without_an_answer_lets_the_next_come(mock_session):
    first = ask(mock_session, 1)
    age(first, mock_session.answer_seconds + MOCK_GRACE_SECONDS + 1)
    ask(mock_session, 2)  # the first is lost: no answer came in time


def test_ending_early_costs_only_what_was_received(mock_session, candidate):
    first = ask(mock_session, 1)
    mock_answer_submit(served=first, text=GOOD_ANSWER)
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    assert mock_session.is_ended
    assert balance(candidate) == 2
    assert len(session_report_get(session=mock_session).items) == 1


def test_an_answer_is_stored_without_feedback_and_with_its_time(mock_session):
    served = ask(mock_session, 1)
    age(served, 42)
    answer = mock_answer_submit(served=served, text=GOOD_ANSWER).answer
    assert answer.feedback_source == Answer.FeedbackSource.PENDING
    assert answer.score is None
    assert answer.strengths == []
    assert not answer.has_feedback
    assert 42 <= answer.seconds_used <= 44
    assert not answer.timed_out
    with pytest.raises(AnswerRefused, match="answered already"):
        mock_answer_submit(served=served, text="a second try")


def test_an_answer_is_taken_until_the_deadline_plus_the_grace(mock_session):
    served = ask(mock_session, 1)
    allowed = mock_session.answer_seconds
    age(served, allowed + MOCK_GRACE_SECONDS - 2)
    answer = mock_answer_submit(served=served, text="").answer
    assert answer.timed_out
    assert answer.seconds_used == allowed
    assert answer.text == ""


def test_an_answer_after_the_grace_is_refused_and_nothing_is_stored(mock_session):
    served = ask(mock_session, 1)
    age(served, mock_session.answer_seconds + MOCK_GRACE_SECONDS + 1)
    with pytest.raises(AnswerRefused, match="ran out"):
        mock_answer_submit(served=served, text=GOOD_ANSWER)
    assert not Answer.objects.filter(served=served).exists()


def test_the_report_numbers_are_the_stored_answers(mock_session):
    first = ask(mock_session, 1)
    mock_answer_submit(served=first, text=GOOD_ANSWER)
    second = ask(mock_session, 2)
    mock_answer_submit(served=second, text="")
    third = ask(mock_session, 3)
    age(third, mock_session.answer_seconds + MOCK_GRACE_SECONDS + 1)  # never answered
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    answers = list(Answer.objects.filter(served__session=mock_session).order_by("served__position"))
    assert len(answers) == 3
    assert all(a.feedback_source == Answer.FeedbackSource.RUBRIC for a in answers)
    assert answers[1].score == 0
    assert answers[2].score == 0
    assert answers[2].timed_out
    assert "No answer was given in the time." in answers[2].gaps
    scores = [a.score for a in answers]
    assert mock_session.report["score"] == round(sum(scores) / 3, 1)
    report = session_report_get(session=mock_session)
    assert [item.answer.score for item in report.items] == scores
    assert report.score == mock_session.report["score"]
    assert mock_session.report["source"] == "rubric"


def test_the_report_is_written_once(mock_session):
    mock_answer_submit(served=ask(mock_session, 1), text=GOOD_ANSWER)
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    first = mock_session.report
    Answer.objects.filter(served__session=mock_session).update(score=10)
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    assert mock_session.report == first


def test_the_report_from_the_model_one_call_for_the_summary(fake_openai, mock_session):
    mock_answer_submit(served=ask(mock_session, 1), text=GOOD_ANSWER)
    asked = fake_openai.requests  # the question itself
    fake_openai.enqueue(
        ok(feedback_payload(score=8)),
        ok({"strengths": ["Clear on the effect lifecycle"], "gaps": ["Say more about </x>"]}),
    )
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    assert fake_openai.requests == asked + 2  # its feedback, then the summary
    assert mock_session.report == {
        "score": 8.0,
        "strengths": ["Clear on the effect lifecycle"],
        "gaps": ["Say more about </x>"],
        "source": "openai",
    }
    body = fake_openai.received_bodies[-1]
    assert body["response_format"]["json_schema"]["name"] == "interview_report"


def test_the_report_falls_back_to_the_rubric_when_the_model_fails(fake_openai, mock_session):
    from interviews.tests.fake_openai import status

    mock_answer_submit(served=ask(mock_session, 1), text=GOOD_ANSWER)
    fake_openai.default = status(500)
    report_build(session=mock_session)
    mock_session.refresh_from_db()
    answer = Answer.objects.get(served__session=mock_session)
    assert answer.feedback_source == Answer.FeedbackSource.RUBRIC
    assert mock_session.report["source"] == "rubric"
    assert mock_session.report["score"] == answer.score


def test_a_practice_session_has_no_length_nor_time(candidate, topic):
    session = session_start(user=candidate, topic=topic, length=3, minutes=5)
    assert (session.mode, session.length, session.minutes) == ("practice", None, None)


# --- views ---------------------------------------------------------------------------------------


@pytest.fixture
def logged_in(client, candidate):
    client.force_login(candidate)
    return client


def test_start_a_mock_interview(logged_in, candidate):
    response = logged_in.post(
        reverse("interviews:start"),
        {"topic": "python", "mode": "mock", "length": "8", "minutes": "10"},
    )
    session = InterviewSession.objects.get(user=candidate)
    assert response.status_code == 302
    assert (session.mode, session.length, session.minutes) == ("mock", 8, 10)


def test_practice_ignores_the_mock_fields(logged_in, candidate):
    logged_in.post(reverse("interviews:start"), {"topic": "sql", "length": "7", "minutes": "x"})
    session = InterviewSession.objects.get(user=candidate)
    assert (session.mode, session.length, session.minutes) == ("practice", None, None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "exam"}, "Mode must be practice or mock."),
        ({"mode": "mock", "length": "4", "minutes": "5"}, "3, 5 or 8 questions"),
        ({"mode": "mock", "length": "3", "minutes": "7"}, "3, 5 or 10 minutes"),
        ({"mode": "mock", "minutes": "5"}, "Choose how many questions"),
    ],
)
def test_start_with_a_bad_mode_says_what_was_wrong(logged_in, candidate, data, message):
    response = logged_in.post(reverse("interviews:start"), {"topic": "python", **data})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not InterviewSession.objects.filter(user=candidate).exists()


def test_the_mock_page_shows_a_countdown_and_no_feedback(logged_in, mock_session):
    logged_in.post(
        reverse("interviews:question_next", args=[mock_session.pk]), {"request_id": "req-00001"}
    )
    html = logged_in.get(mock_session.get_absolute_url()).content.decode()
    assert 'role="timer"' in html
    assert 'aria-live="polite"' in html
    assert 'data-seconds-left="300"' in html or 'data-seconds-left="299"' in html
    answer_url = reverse("interviews:answer", args=[mock_session.pk, 1])
    response = logged_in.post(answer_url, {"text": GOOD_ANSWER})
    assert response.status_code == 303
    answer = Answer.objects.get(served__session=mock_session)
    assert answer.feedback_source == Answer.FeedbackSource.PENDING
    html = logged_in.get(mock_session.get_absolute_url()).content.decode()
    assert "Answer recorded" in html
    assert "What was good" not in html
    assert logged_in.post(answer_url, {"text": GOOD_ANSWER}).status_code == 409


def test_the_last_answer_ends_the_interview_and_leads_to_its_report(logged_in, candidate, topic):
    session = session_start(user=candidate, topic=topic, mode="mock", length=3, minutes=3)
    for n in range(1, 4):
        logged_in.post(
            reverse("interviews:question_next", args=[session.pk]), {"request_id": f"req-000{n}"}
        )
        response = logged_in.post(
            reverse("interviews:answer", args=[session.pk, n]), {"text": GOOD_ANSWER}
        )
    assert response.status_code == 303
    assert response["Location"] == reverse("interviews:report", args=[session.pk])
    session.refresh_from_db()
    assert session.is_ended
    assert session.report is not None
    html = logged_in.get(response["Location"]).content.decode()
    scores = [int(s) for s in re.findall(r"data-score><strong>(\d+)</strong>", html)]
    stored = list(
        Answer.objects.filter(served__session=session)
        .order_by("served__position")
        .values_list("score", flat=True)
    )
    assert scores == stored
    assert f"<strong>{session.report['score']}</strong> / 10" in html


def test_end_interview_writes_the_report(logged_in, mock_session):
    logged_in.post(
        reverse("interviews:question_next", args=[mock_session.pk]), {"request_id": "req-00001"}
    )
    response = logged_in.post(reverse("interviews:report", args=[mock_session.pk]))
    assert response.status_code == 303
    mock_session.refresh_from_db()
    assert mock_session.is_ended
    assert mock_session.report["score"] == 0


def test_the_markdown_download_escapes_the_candidates_text(logged_in, mock_session):
    served = ask(mock_session, 1)
    text = "# Title\n[link](http://evil.example) <script>x</script>\n- item *bold* `code`"
    mock_answer_submit(served=served, text=text)
    report_build(session=mock_session)
    response = logged_in.get(reverse("interviews:report_markdown", args=[mock_session.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="mockroom-reactjs-')
    body = response.content.decode()
    assert "> \\# Title" in body
    assert "\\[link\\]\\(http\\:" in body
    assert "\\<script\\>" in body
    assert "> \\- item \\*bold\\* \\`code\\`" in body
    assert "<script>" not in body
    assert markdown_escape("a\nb|c") == "a b\\|c"


def test_the_report_is_the_candidates_own(client, mock_session, make_user):
    report_build(session=mock_session)
    client.force_login(make_user(email="other@example.com"))
    for name in ("interviews:report", "interviews:report_markdown"):
        assert client.get(reverse(name, args=[mock_session.pk])).status_code == 404
    assert client.post(reverse("interviews:report", args=[mock_session.pk])).status_code == 404


def test_a_practice_session_has_no_report(logged_in, session):
    assert logged_in.get(reverse("interviews:report", args=[session.pk])).status_code == 404
