import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from accounts.selectors import welcome_grant_get
from config.http import body_max_bytes, see_other
from config.limits import Limited, arate_limit
from config.metrics import Refusal, refusal_count
from config.middleware import preloaded, preloads
from config.types import HtmxHttpRequest
from interviews import selectors, services
from interviews.exceptions import (
    AnswerRefused,
    FeedbackLimitReached,
    FeedbackUnavailable,
    FollowUpRefused,
    GenerationFailed,
    Reason,
    SessionEnded,
)
from interviews.execution import executor_get
from interviews.forms import (
    AnswerForm,
    CodeAnswerForm,
    MockAnswerForm,
    NextQuestionForm,
    StartSessionForm,
)
from interviews.models import InterviewSession, Recording, ServedQuestion
from interviews.progress import (
    CHART_HEIGHT,
    CHART_PAD,
    CHART_WIDTH,
    progress_list,
    weak_spot_list,
)
from interviews.report import report_markdown
from ledger.context_processors import balance_known
from ledger.exceptions import (
    InsufficientTokens,
    RequestAlreadyFailed,
    RequestConflict,
    RequestInProgress,
)
from ledger.middleware import balance_badge_add, mark_balance_changed

NOT_CHARGED = "You were not charged."


def _own_session(request: HtmxHttpRequest, session_id: uuid.UUID) -> InterviewSession:
    try:
        return selectors.session_get(user=request.user, session_id=session_id)
    except InterviewSession.DoesNotExist:
        raise Http404("No such session.") from None


def _own_question(request: HtmxHttpRequest, session_id: uuid.UUID, position: int) -> ServedQuestion:
    try:
        return selectors.served_question_get(
            user=request.user, session_id=session_id, position=position
        )
    except ServedQuestion.DoesNotExist:
        raise Http404("No such question.") from None


def _answer_form(served: ServedQuestion) -> AnswerForm | CodeAnswerForm:
    answer = getattr(served, "answer", None)
    auto_id = f"answer-{served.position}-%s"
    if served.question.is_code:  # the editor starts from the candidate's code, or the starter
        problem = served.question.problem or {}
        initial = {
            "text": answer.text if answer else problem.get("starter", ""),
            "note": answer.note if answer else "",
        }
        return CodeAnswerForm(initial=initial, question=served.question, auto_id=auto_id)
    return AnswerForm(initial={"text": answer.text} if answer else None, auto_id=auto_id)


def _session_page(
    request: HtmxHttpRequest,
    session: InterviewSession,
    *,
    status: int = 200,
    error: str = "",
    invalid: AnswerForm | CodeAnswerForm | None = None,
    invalid_position: int | None = None,
    run: dict[str, object] | None = None,
) -> HttpResponse:
    """The session page; `invalid` is the form as posted for the question at
    `invalid_position` (with its errors, or a run's code), `run` that run's results."""
    served = selectors.served_question_tree(session=session)
    for item in served:
        item.answer_form = invalid if item.position == invalid_position else _answer_form(item)  # type: ignore[attr-defined]  # read by the template
        if run is not None and item.position == invalid_position:
            item.run = run  # read by the template
    pool = selectors.pool_progress_get(user=request.user, topic=session.topic)
    context = {
        "session": session,
        "served": served,
        "pool": pool,
        "error": error,
        "request_id": uuid.uuid4().hex,
        "summary": selectors.session_summary_get(session=session) if session.is_ended else None,
    }
    if session.is_code:  # said before the candidate writes any code (probed once per process)
        executor = executor_get()
        context["execution_off"] = "" if executor.available else executor.reason
    if session.is_mock:
        context["mock"] = selectors.mock_state_get(session=session)
        context["warn_at"] = settings.MOCK_SECONDS_PER_MINUTE
        return render(request, "interviews/mock.html", context, status=status)
    return render(request, "interviews/session.html", context, status=status)


@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    return _dashboard_page(request, StartSessionForm())


def _dashboard_page(
    request: HtmxHttpRequest, form: StartSessionForm, status: int = 200
) -> HttpResponse:
    context = {
        "form": form,
        "topics": selectors.topic_progress_list(user=request.user),
        "sessions": selectors.session_list(user=request.user)[:20],
    }
    return render(request, "interviews/dashboard.html", context, status=status)


@require_POST
def session_start(request: HtmxHttpRequest) -> HttpResponse:
    form = StartSessionForm(request.POST)
    focus: list[str] = []
    if form.is_valid() and form.cleaned_data["focus"] == "weak":
        topic = form.cleaned_data["topic"]
        focus = weak_spot_list(user=request.user, topic=topic)
        if not focus:
            form.add_error(
                "focus",
                f"No weak spots in {topic.name} yet: answer a few questions there first, and "
                "the key points you miss become the ones to practise.",
            )
    if not form.is_valid():
        return _dashboard_page(request, form, status=400)
    session = services.session_start(
        user=request.user,
        topic=form.cleaned_data["topic"],
        difficulty=form.cleaned_data["difficulty"],
        mode=form.cleaned_data["mode"],
        length=form.cleaned_data["length"],
        minutes=form.cleaned_data["minutes"],
        focus=focus,
    )
    return redirect(session)


@require_GET
def session_detail(request: HtmxHttpRequest, session_id: uuid.UUID) -> HttpResponse:
    return _session_page(request, _own_session(request, session_id))


@require_POST
def session_end(request: HtmxHttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = services.session_end(session=_own_session(request, session_id))
    return redirect(session)


def _question_refused(
    request: HtmxHttpRequest,
    session: InterviewSession,
    *,
    status: int,
    message: str,
    slot: str = "#question-alert",
) -> HttpResponse:
    """A refusal the user can see: a role="alert" message in the page (in `slot`, an alert slot
    of the page, for htmx), and the right status."""
    if not request.htmx:
        return _session_page(request, session, status=status, error=message)
    response = render(
        request, "interviews/session.html#question-alert", {"error": message}, status=status
    )
    return reswap(retarget(response, slot), "innerHTML")


@dataclass(frozen=True)
class _Refusal:
    status: int
    message: str
    retry_after: str = ""
    # Counted in mockroom_refusals; None: counted where it was refused (the limits).
    reason: Refusal | None = None


# What a purchase (a question, a follow-up) may be refused with; all of them charge nothing.
PURCHASE_REFUSALS = (
    Limited,
    InsufficientTokens,
    RequestInProgress,
    RequestConflict,
    SessionEnded,
    FollowUpRefused,
    GenerationFailed,
    RequestAlreadyFailed,
)


async def _purchase_refusal(request: HtmxHttpRequest, exc: Exception, *, what: str) -> _Refusal:
    """The status and the message of a refused purchase of a `what` ("question", "follow-up")."""
    if isinstance(exc, Limited):  # a rate limit, or the candidate's model calls in flight
        return _Refusal(429, exc.message, str(exc.retry_after))
    if isinstance(exc, InsufficientTokens):
        if settings.ACCOUNT_EMAIL_VERIFICATION != "none" and (
            await sync_to_async(welcome_grant_get)(user=request.user) is None
        ):
            return _Refusal(
                402,
                "Verify your email address to receive your welcome tokens: open the link we "
                f"sent to {request.user.email} (your Account page sends it again). {NOT_CHARGED}",
                reason=Refusal.TOKENS,
            )
        return _Refusal(
            402,
            f"You need 1 token for a {what} and have {exc.available}. {NOT_CHARGED} "
            + (
                "Buy tokens (Receipts, Buy tokens) or ask the Mockroom team for more."
                if settings.PAYMENTS_PROVIDER != "none"
                else "Ask the Mockroom team for more tokens."
            ),
            reason=Refusal.TOKENS,
        )
    if isinstance(exc, RequestInProgress):
        # The page asks again with the same request id after Retry-After (backing off): the
        # answer is the question once it is ready, or "not charged" if its attempt died.
        return _Refusal(
            409,
            f"Your {what} is still being prepared. We will check again in a moment; "
            "you will be charged once.",
            "2",
            reason=Refusal.IN_PROGRESS,
        )
    if isinstance(exc, RequestConflict):
        return _Refusal(
            422,
            "This request id was already used for another request. Reload the page.",
            reason=Refusal.CONFLICT,
        )
    if isinstance(exc, SessionEnded | FollowUpRefused):
        return _Refusal(409, str(exc), reason=Refusal.CLOSED)
    reason = Refusal.MODEL
    if isinstance(exc, GenerationFailed) and exc.reason in _GENERATION_REFUSALS:
        reason = _GENERATION_REFUSALS[exc.reason]
    return _Refusal(
        503,
        f"We could not generate a {what} just now. {NOT_CHARGED} Please try again.",
        reason=reason,
    )


# A generation that failed for one of these reasons is counted apart from the model's failures.
_GENERATION_REFUSALS = {Reason.BUDGET_SPENT: Refusal.BUDGET, Reason.OVERLOADED: Refusal.OVERLOADED}


# The two views that wait on the model are coroutines: while the model works they hold no
# thread and no database connection (the services hand it back). Their database work and
# template rendering run as short synchronous steps (sync_to_async).


@preloads(_own_session)  # read with the login check, in its thread hop
@require_POST
async def question_next(request: HtmxHttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = preloaded(request) or await sync_to_async(_own_session)(request, session_id)
    bought = await _purchase(
        request,
        session,
        buy=lambda request_id: services.aquestion_next(session=session, request_id=request_id),
        what="question",
        slot="#question-alert",
    )
    if isinstance(bought, HttpResponse):
        return bought
    if not request.htmx:
        return see_other(bought.served.get_absolute_url())
    if not bought.replay:
        # The card of a question just bought is built from what its capture returned and
        # reads nothing: rendered here, in the event loop, with no thread hop. Should its
        # templates ever read the database, Django's async-safety check stops that read and
        # the card is rendered in a thread below instead (config/tests/test_asgi.py pins that
        # it is not).
        with suppress(SynchronousOnlyOperation):
            return _question_delivered(request, session, bought)
    return await sync_to_async(_question_delivered)(request, session, bought)


async def _purchase(
    request: HtmxHttpRequest,
    session: InterviewSession,
    *,
    buy: Callable[[str], Awaitable[services.NextQuestion]],
    what: str,
    slot: str,
) -> services.NextQuestion | HttpResponse:
    """A purchase's request id checked, its rate limit counted, then `buy(request_id)`; or the
    refusal to show in `slot` (nothing charged)."""
    if request.htmx:
        mark_balance_changed(request)  # every answer carries the stored balance
    form = NextQuestionForm(request.POST)
    if not form.is_valid():
        message = " ".join(str(error) for error in form.errors["request_id"])
        return await sync_to_async(_question_refused)(
            request, session, status=400, message=message, slot=slot
        )
    try:
        await arate_limit(
            request,
            action="questions",
            rates=settings.RATE_LIMIT_QUESTIONS,
            what="Too many question requests",
        )
        return await buy(form.cleaned_data["request_id"])
    except PURCHASE_REFUSALS as exc:
        refusal = await _purchase_refusal(request, exc, what=what)
        if refusal.reason is not None:
            refusal_count(refusal.reason)
        response = await sync_to_async(_question_refused)(
            request, session, status=refusal.status, message=refusal.message, slot=slot
        )
        if refusal.retry_after:
            response["Retry-After"] = refusal.retry_after
        return response


def _question_delivered(
    request: HtmxHttpRequest, session: InterviewSession, result: services.NextQuestion
) -> HttpResponse:
    served = result.served
    if result.replay:
        served = _own_question(request, session.pk, served.position)
    else:
        # Just stored with its question, its debit and its number; it has no answer yet, and
        # the balance is the one its debit left: the card needs no query.
        ServedQuestion.answer.related.set_cached_value(served, None)
        balance_known(request, served.debit.balance_after)
    # A replay answers like the first time; the page replaces the card if it already shows it.
    card = _card_delivered(request, session, served, progress=result.progress)
    return balance_badge_add(request, card)


def _card_delivered(
    request: HtmxHttpRequest,
    session: InterviewSession,
    served: ServedQuestion,
    *,
    progress: selectors.PoolProgress | None = None,
) -> HttpResponse:
    """A question just bought, as the page adds it: its card (focused), and out of band the
    pool's progress, the button's label and the 0-token hint. Its number and the pool's
    progress are read here unless the capture already gave them."""
    served.answer_form = _answer_form(served)  # type: ignore[attr-defined]  # read by the template
    if not served.label:
        served.label = selectors.served_question_label_get(served=served)
    context = {
        "session": session,
        "sq": served,
        "served": [served],
        "focus": True,
        "oob": True,
        "pool": progress or selectors.pool_progress_get(user=request.user, topic=session.topic),
    }
    return render(request, "interviews/session.html#question-added", context)


@preloads(_own_question)  # read with the login check, in its thread hop
@require_POST
async def follow_up_next(
    request: HtmxHttpRequest, session_id: uuid.UUID, position: int
) -> HttpResponse:
    """Buy a follow-up to an answered question (1 token), with the statuses of question_next.
    The new card goes right after its parent's chain of follow-ups."""
    parent = preloaded(request) or await sync_to_async(_own_question)(request, session_id, position)
    bought = await _purchase(
        request,
        parent.session,
        buy=lambda request_id: services.afollow_up_next(parent=parent, request_id=request_id),
        what="follow-up",
        slot=f"#follow-up-alert-{position}",
    )
    if isinstance(bought, HttpResponse):
        return bought
    if not request.htmx:
        return see_other(bought.served.get_absolute_url())
    return await sync_to_async(_follow_up_delivered)(request, parent, bought)


def _follow_up_delivered(
    request: HtmxHttpRequest, parent: ServedQuestion, result: services.NextQuestion
) -> HttpResponse:
    session = parent.session
    served = _own_question(request, session.pk, result.served.position)
    # The new card goes after the last card of its parent's chain (the parent itself when it
    # has no other follow-up), so the page reads in order: 3, 3.1, 3.1.1, 3.2, 4.
    previous = selectors.served_question_previous_get(served=served) or parent
    response = _card_delivered(request, session, served)
    response = reswap(retarget(response, f"#q-{previous.position}"), "afterend")
    return balance_badge_add(request, response)


@require_POST
async def answer_submit(
    request: HtmxHttpRequest, session_id: uuid.UUID, position: int
) -> HttpResponse:
    served = await sync_to_async(_own_question)(request, session_id, position)
    if served.session.is_mock:  # stored as it stands, without feedback (it comes at the end)
        return await _mock_answer_submit(request, served)
    if served.question.is_code:
        return await _code_answer_submit(request, served)
    form = AnswerForm(request.POST, auto_id=f"answer-{position}-%s")
    return await _answer_submitted(
        request,
        served,
        form,
        submit=lambda data: services.aanswer_submit(
            served=served, text=data["text"], recording_id=request.POST.get("recording", "")
        ),
        what="Too many feedback requests",
    )


async def _answer_submitted(
    request: HtmxHttpRequest,
    served: ServedQuestion,
    form: AnswerForm | CodeAnswerForm,
    *,
    submit: Callable[[dict[str, Any]], Awaitable[object]],
    what: str,
) -> HttpResponse:
    """A valid answer (typed, spoken or code) rate-limited and submitted; the card back with its
    feedback, or with the form, the text as typed and what was wrong. Free."""
    status, retry_after = 422, None
    if form.is_valid():
        try:
            await arate_limit(
                request, action="feedback", rates=settings.RATE_LIMIT_FEEDBACK, what=what
            )
            await submit(form.cleaned_data)
        except Limited as exc:  # the form comes back with the text typed and the message
            form.add_error("text", exc.message)
            status, retry_after = 429, exc.retry_after
        except FeedbackUnavailable:
            refusal_count(Refusal.MODEL)
            form.add_error(
                "text",
                "Feedback is unavailable right now; your earlier feedback is kept. "
                "Try again in a moment, it is free.",
            )
            status = 503
        except FeedbackLimitReached as exc:
            refusal_count(Refusal.FEEDBACK_LIMIT)
            form.add_error("text", str(exc))
            status = 429
    if form.is_valid() and not request.htmx:
        return see_other(served.get_absolute_url())
    response = await sync_to_async(_answer_page)(request, served, form, status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _answer_page(
    request: HtmxHttpRequest,
    served: ServedQuestion,
    form: AnswerForm | CodeAnswerForm,
    status: int,
) -> HttpResponse:
    if form.is_valid():
        served = _own_question(request, served.session_id, served.position)
        served.answer_form = _answer_form(served)  # type: ignore[attr-defined]  # read by the template
        status = 200
    else:
        if not request.htmx:
            return _session_page(
                request,
                served.session,
                status=status,
                invalid=form,
                invalid_position=served.position,
            )
        served.answer_form = form  # type: ignore[attr-defined]  # read by the template
    served.label = selectors.served_question_label_get(served=served)
    return render(
        request,
        "interviews/session.html#question-card",
        {"session": served.session, "sq": served},
        status=status,
    )


# --- coding problems ----------------------------------------------------------------------------


async def _code_answer_submit(request: HtmxHttpRequest, served: ServedQuestion) -> HttpResponse:
    """A solution run against the hidden tests and graded; the card comes back with the tests'
    report and the feedback. Free; rate-limited and capped like feedback."""
    form = CodeAnswerForm(
        request.POST, question=served.question, auto_id=f"answer-{served.position}-%s"
    )
    return await _answer_submitted(
        request,
        served,
        form,
        submit=lambda data: services.acode_answer_submit(
            served=served, code=data["text"], note=data["note"]
        ),
        what="Too many submissions",
    )


@require_POST
async def code_run(request: HtmxHttpRequest, session_id: uuid.UUID, position: int) -> HttpResponse:
    """Run the code in `text` on the problem's visible examples, in the sandbox: their results
    (htmx partial). Free; 429 past RATE_LIMIT_CODE_RUNS; 503 when code is not run here."""
    # A database step: its connection goes back to the pool before the sandbox runs, so runs
    # waiting on the sandbox hold none (other requests would queue for one).
    served = await sync_to_async(services.db_step(_own_question))(request, session_id, position)
    if not served.question.is_code:
        raise Http404("This question has no code to run.")
    code = request.POST.get("text", "")
    context: dict[str, object] = {"sq": served, "session": served.session}
    status = 200
    if not code.strip():
        context["run_error"] = "Write some code first: the examples run it."
        status = 422
    else:
        try:
            await arate_limit(
                request,
                action="code-runs",
                rates=settings.RATE_LIMIT_CODE_RUNS,
                what="Too many runs",
            )
            context["run"] = await services.acode_run(question=served.question, code=code)
        except Limited as exc:
            response = await sync_to_async(render)(
                request,
                "interviews/session.html#code-run",
                context | {"run_error": exc.message},
                status=429,
            )
            response["Retry-After"] = str(exc.retry_after)
            return response
        except services.CodeNotRun as exc:
            context["run_error"] = str(exc)
            status = 503
    if not request.htmx:  # without JavaScript: the page, the code as posted, and the results
        posted = CodeAnswerForm(
            request.POST, question=served.question, auto_id=f"answer-{position}-%s"
        )
        return await sync_to_async(_session_page)(
            request,
            served.session,
            status=status,
            error=str(context.get("run_error", "")),
            invalid=posted,
            invalid_position=position,
            run=context.get("run"),  # type: ignore[arg-type]
        )
    # The page's context (the badge's balance) reads the database: in a thread.
    return await sync_to_async(render)(
        request, "interviews/session.html#code-run", context, status=status
    )


# --- spoken answers -----------------------------------------------------------------------------


def _recording_max_seconds(served: ServedQuestion) -> int:
    """A recording's cap: the mock interview's time for an answer, else TRANSCRIBE_MAX_SECONDS."""
    session = served.session
    if session.is_mock:
        return min(session.answer_seconds, settings.TRANSCRIBE_MAX_SECONDS) or 1
    return int(settings.TRANSCRIBE_MAX_SECONDS)


def _recording_read(request: HtmxHttpRequest, served: ServedQuestion) -> tuple[str, float, bytes]:
    """The upload's bytes sniffed, decoded and normalised (container, seconds, WAV), or
    RecordingRefused saying what was wrong. CPU and file work: in a thread."""
    from interviews.speech.audio import AudioRefused, normalise, sniff

    upload = request.FILES.get("audio")
    if upload is None:
        raise services.RecordingRefused(400, "No recording arrived: record again.")
    if upload.size is not None and upload.size > settings.RECORDING_MAX_BYTES:
        raise services.RecordingRefused(413, _too_large())
    data = upload.read()
    container = sniff(data)
    if container is None:
        raise services.RecordingRefused(
            422, "This file is not audio we can read: record again, or type your answer."
        )
    try:
        # A little grace: MediaRecorder stops slightly after the page's timer.
        audio = normalise(data, max_seconds=_recording_max_seconds(served) + 3)
    except AudioRefused as exc:
        raise services.RecordingRefused(422, str(exc)) from None
    return container, audio.duration_seconds, audio.wav


def _recording_most() -> int:
    """The most a recording's request may hold: RECORDING_MAX_BYTES, and the form around it."""
    return int(settings.RECORDING_MAX_BYTES) + 64 * 1024


def _too_large() -> str:
    megabytes = settings.RECORDING_MAX_BYTES / 1_000_000
    return (
        f"Your recording is larger than {megabytes:g} MB, the most we take: record a shorter "
        "answer, or type it. Nothing was kept."
    )


def _recording_fragment(
    request: HtmxHttpRequest, served: ServedQuestion, context: dict[str, object], status: int
) -> HttpResponse:
    return render(
        request,
        "interviews/session.html#transcription",
        {"sq": served, "session": served.session, **context},
        status=status,
    )


@require_POST
@body_max_bytes(_recording_most, refusal=_too_large)
async def recording_upload(
    request: HtmxHttpRequest, session_id: uuid.UUID, position: int
) -> HttpResponse:
    """A spoken answer's recording (multipart `audio`): checked from its bytes, decoded to 16 kHz
    mono WAV, transcribed in the background; 202 with a fragment that polls for the draft.
    413 past RECORDING_MAX_BYTES; 422 not audio, empty, silent or too long; 429 too many or one
    in flight; 503 voice answers off. Free; the audio is deleted once transcribed."""
    from interviews.speech.engines import engine_get

    served = await sync_to_async(_own_question)(request, session_id, position)
    try:
        if not engine_get().available:
            raise services.RecordingRefused(
                503, "Voice answers are off on this server: type your answer."
            )
        # Before reading the body (the ASGI server refused it already: config.asgi).
        if int(request.META.get("CONTENT_LENGTH") or 0) > _recording_most():
            raise services.RecordingRefused(413, _too_large())
        await arate_limit(
            request,
            action="recordings",
            rates=settings.RATE_LIMIT_FEEDBACK,
            what="Too many recordings",
        )
        container, seconds, wav = await sync_to_async(_recording_read)(request, served)
        recording = await sync_to_async(services.recording_start)(
            served=served,
            user=request.user,
            container=container,
            seconds=seconds,
            wav=wav,
            request_id=request.headers.get("X-Request-ID", ""),
        )
    except Limited as exc:
        response = await sync_to_async(_recording_fragment)(
            request, served, {"recording_error": exc.message}, 429
        )
        response["Retry-After"] = str(exc.retry_after)
        return response
    except services.RecordingRefused as exc:
        if exc.status == 429:  # another recording of the candidate is being transcribed
            refusal_count(Refusal.IN_FLIGHT)
        return await sync_to_async(_recording_fragment)(
            request, served, {"recording_error": exc.message}, exc.status
        )
    return await sync_to_async(_recording_fragment)(
        request, served, {"recording": recording, "poll": 1}, 202
    )


# The page asks every second for this many seconds at most, then stops and says so.
RECORDING_POLLS = 180


@require_GET
def recording_status(
    request: HtmxHttpRequest, session_id: uuid.UUID, position: int, recording_id: int
) -> HttpResponse:
    """A recording's transcription, as the page polls for it: still going (another poll, at most
    RECORDING_POLLS), the draft (put into the answer box by the page), or why it failed."""
    served = _own_question(request, session_id, position)
    recording = Recording.objects.filter(pk=recording_id, served=served).first()
    if recording is None:
        raise Http404("No such recording.")
    try:
        poll = int(request.GET.get("poll", "1"))
    except ValueError:
        poll = 1
    context: dict[str, object] = {"recording": recording, "poll": poll + 1}
    if recording.status == Recording.Status.PENDING and poll >= RECORDING_POLLS:
        context = {
            "recording_error": "The transcription is taking too long: your typed text is "
            "untouched. Record again, or type your answer."
        }
    return _recording_fragment(request, served, context, 200)


# --- mock interviews -----------------------------------------------------------------------------


def _report_url(session: InterviewSession) -> str:
    return reverse("interviews:report", kwargs={"session_id": session.pk})


async def _mock_answer_submit(request: HtmxHttpRequest, served: ServedQuestion) -> HttpResponse:
    """A mock interview's answer, stored as it stands without feedback; after the last one the
    interview ends and the candidate goes to its report."""
    session = served.session
    form = MockAnswerForm(request.POST)
    if not form.is_valid():
        message = " ".join(str(e) for e in form.errors["text"])
        return await sync_to_async(_session_page)(request, session, status=422, error=message)
    try:
        result = await sync_to_async(services.mock_answer_submit)(
            served=served,
            text=form.cleaned_data["text"],
            recording_id=request.POST.get("recording", ""),
        )
    except AnswerRefused as exc:
        return await sync_to_async(_session_page)(request, session, status=409, error=str(exc))
    if result.finished:
        with suppress(Limited):  # the report page offers to finish it
            await services.areport_build(session=session)
        return see_other(_report_url(session))
    return see_other(session.get_absolute_url())


def _report_page(
    request: HtmxHttpRequest, session: InterviewSession, *, status: int = 200, error: str = ""
) -> HttpResponse:
    context = {
        "session": session,
        "report": selectors.session_report_get(session=session),
        "error": error,
    }
    return render(request, "interviews/report.html", context, status=status)


@require_http_methods(["GET", "POST"])
async def session_report(request: HtmxHttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """GET: a mock interview's report (printable). POST: end the interview and write its report
    (feedback on every answer, then the overall part), free; then 303 to the report."""
    session = await sync_to_async(_own_session)(request, session_id)
    if not session.is_mock:
        raise Http404("Only a mock interview has a report.")
    if request.method == "POST":
        try:
            await services.areport_build(session=session)
        except Limited as exc:
            session = await sync_to_async(_own_session)(request, session_id)
            response = await sync_to_async(_report_page)(
                request, session, status=429, error=f"{exc.message}. Your report is free."
            )
            response["Retry-After"] = str(exc.retry_after)
            return response
        return see_other(_report_url(session))
    return await sync_to_async(_report_page)(request, session)


@require_GET
def session_report_markdown(request: HtmxHttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The report as a Markdown file to keep."""
    session = _own_session(request, session_id)
    if not session.is_mock or session.report is None:
        raise Http404("This interview has no report yet.")
    text = report_markdown(report=selectors.session_report_get(session=session))
    response = HttpResponse(text, content_type="text/markdown; charset=utf-8")
    name = f"mockroom-{session.topic.slug}-{session.started_at:%Y-%m-%d}-report.md"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
def progress(request: HtmxHttpRequest) -> HttpResponse:
    """Per topic: the score trend, answers, average and best score, time spent, and the key
    points missed most often."""
    chart = {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad": CHART_PAD,
        "right": CHART_WIDTH - CHART_PAD,
        "middle": CHART_HEIGHT / 2,
        "bottom": CHART_HEIGHT - CHART_PAD,
    }
    context = {"progress": progress_list(user=request.user), "chart": chart}
    return render(request, "interviews/progress.html", context)
