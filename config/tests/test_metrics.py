"""Prometheus metrics: /metrics only for the bearer of METRICS_TOKEN; what is counted where it
happens (requests, questions, refusals by reason, model calls); what is read from the database
when scraped (pending holds, queues, the model budget); and, against `make serve`'s server with
two workers, every scrape counting every worker, a killed one included."""

import io
import os
import re
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import OperationalError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from config.limits import Limited, in_flight
from config.testing import run_concurrently
from interviews import llm, services
from interviews.models import PreparedQuestion, Topic
from interviews.services import session_start
from interviews.tests.fake_openai import FakeOpenAI, ok, question_payload, status
from interviews.tests.test_serving import (
    ProductionServer,
    logged_in_cookies,
    next_url,
    suppress_all,
    wait_for,
    worker_pids,
)
from ledger.models import Hold
from ledger.services import account_get_or_open, hold_reserve

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-metrics-token-0123456789"
HTMX = {"HTTP_HX_REQUEST": "true"}

type Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry these labels (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
def scrape(settings):
    """scrape() -> the samples /metrics answers now, read with Prometheus's own parser."""
    settings.METRICS_TOKEN = TOKEN

    def read() -> Samples:
        response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200
        return parse(response.content.decode())

    return read


@pytest.fixture
def candidate(make_user):
    return make_user(tokens=3)


@pytest.fixture
def topic(db) -> Topic:
    return Topic.objects.get(slug="reactjs")


@pytest.fixture
def session(candidate, topic):
    return session_start(user=candidate, topic=topic, difficulty="easy")


@pytest.fixture
def logged_in(client, candidate):
    client.force_login(candidate)
    return client


# --- Who may read them ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", TOKEN, f"Basic {TOKEN}", "Bearer "],
)
def test_metrics_are_a_404_without_the_exact_token(client, db, settings, authorization):
    settings.METRICS_TOKEN = TOKEN
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = client.get("/metrics", **headers)
    assert response.status_code == 404
    assert b"mockroom_" not in response.content
    assert client.post("/metrics", **headers).status_code == 404


def test_metrics_are_served_to_the_bearer_of_the_token_without_a_login(client, db, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    samples = parse(response.content.decode())
    assert value(samples, "mockroom_metrics_database_up") == 1
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


@pytest.mark.parametrize("authorization", ["Bearer ", "Bearer x", "Bearer None"])
def test_metrics_are_off_while_the_token_is_unset(client, db, settings, authorization):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION=authorization).status_code == 404


# --- Counted where it happens ---------------------------------------------------------------


def test_requests_are_counted_by_route_method_and_status_never_by_path(client, db, scrape):
    before = scrape()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no-such-page-4b1f").status_code == 404
    assert client.get("/interviews/").status_code == 302  # the login check's redirect
    after = scrape()

    def delta(**labels: str) -> float:
        return value(after, "mockroom_http_requests_total", **labels) - value(
            before, "mockroom_http_requests_total", **labels
        )

    assert delta(route="healthz", method="GET", status="200") == 3
    assert delta(route="unmatched", method="GET", status="404") == 1
    assert delta(route="interviews:dashboard", method="GET", status="302") == 1
    routes = {dict(labels).get("route") for (name, labels) in after if "http_requests" in name}
    assert not any("no-such-page" in (route or "") for route in routes)


def test_a_question_served_and_a_question_refused_for_tokens(logged_in, session, scrape):
    before = scrape()
    for n in range(3):  # 3 tokens
        response = logged_in.post(next_url(session), {"request_id": f"metrics-{n:04d}"}, **HTMX)
        assert response.status_code == 200
    refused = logged_in.post(next_url(session), {"request_id": "metrics-0003"}, **HTMX)
    assert refused.status_code == 402
    after = scrape()
    served = "mockroom_questions_served_total"
    assert (
        value(after, served, kind="question", source="bank")
        - value(before, served, kind="question", source="bank")
        == 3
    )
    refusals = "mockroom_refusals_total"
    assert value(after, refusals, reason="tokens") - value(before, refusals, reason="tokens") == 1
    assert (
        value(after, "mockroom_http_requests_total", route="interviews:question_next")
        - value(before, "mockroom_http_requests_total", route="interviews:question_next")
        == 4
    )


def refused_once(scrape, reason: str, refuse) -> None:
    """`refuse()` makes one request that must be refused: it is counted once, under `reason`."""
    before = value(scrape(), "mockroom_refusals_total", reason=reason)
    refuse()
    assert value(scrape(), "mockroom_refusals_total", reason=reason) == before + 1


def test_a_request_still_in_progress_is_counted_409(logged_in, session, candidate, scrape):
    hold_reserve(
        account=account_get_or_open(user=candidate),
        request_id="metrics-running",
        purpose=f"question:{session.pk}",
        actor=candidate,
    )

    def refuse() -> None:
        response = logged_in.post(next_url(session), {"request_id": "metrics-running"}, **HTMX)
        assert response.status_code == 409

    refused_once(scrape, "in_progress", refuse)


def test_a_request_id_reused_is_counted_422(logged_in, session, candidate, topic, scrape):
    other = session_start(user=candidate, topic=topic)
    assert logged_in.post(next_url(session), {"request_id": "metrics-reused"}).status_code == 303

    def refuse() -> None:
        response = logged_in.post(next_url(other), {"request_id": "metrics-reused"}, **HTMX)
        assert response.status_code == 422

    refused_once(scrape, "conflict", refuse)


def test_a_rate_limit_refusal_is_counted_429(logged_in, session, settings, scrape):
    settings.RATE_LIMIT_QUESTIONS = "1/m/user"
    assert (
        logged_in.post(next_url(session), {"request_id": "metrics-r1"}, **HTMX).status_code == 200
    )

    def refuse() -> None:
        response = logged_in.post(next_url(session), {"request_id": "metrics-r2"}, **HTMX)
        assert response.status_code == 429

    refused_once(scrape, "rate", refuse)


def test_an_in_flight_refusal_is_counted_429(db, scrape):
    async def second_call_refused() -> None:
        async with in_flight("metrics-test", limit=1, ttl=60, what="Busy"):
            with pytest.raises(Limited):
                async with in_flight("metrics-test", limit=1, ttl=60, what="Busy"):
                    pass

    refused_once(scrape, "in_flight", async_to_sync(second_call_refused))


def test_the_model_failing_is_counted_503_and_its_calls_by_outcome(
    fake_openai, logged_in, session, scrape
):
    fake_openai.enqueue(status(500), status(500))  # the first attempt and its one retry
    before = scrape()

    def refuse() -> None:
        response = logged_in.post(next_url(session), {"request_id": "metrics-down"}, **HTMX)
        assert response.status_code == 503

    refused_once(scrape, "model", refuse)
    after = scrape()
    calls = "mockroom_model_calls_total"
    labels = {"purpose": "question", "outcome": "server_error"}
    assert value(after, calls, **labels) - value(before, calls, **labels) == 1


def test_the_model_overloaded_is_counted_503(fake_openai, logged_in, session, settings, scrape):
    settings.LLM_MAX_CONCURRENCY = 1

    def refuse() -> None:
        with llm.generation_slot():  # another request of this process waits on the model
            response = logged_in.post(next_url(session), {"request_id": "metrics-busy"}, **HTMX)
        assert response.status_code == 503

    refused_once(scrape, "overloaded", refuse)


def test_the_daily_budget_spent_is_counted_503_and_shown(
    fake_openai, logged_in, session, settings, scrape
):
    settings.LLM_DAILY_CALL_BUDGET = 1
    fake_openai.enqueue(ok(question_payload(text="What does the budget protect?")))
    assert (
        logged_in.post(next_url(session), {"request_id": "metrics-b1"}, **HTMX).status_code == 200
    )

    def refuse() -> None:
        response = logged_in.post(next_url(session), {"request_id": "metrics-b2"}, **HTMX)
        assert response.status_code == 503

    refused_once(scrape, "budget", refuse)
    samples = scrape()
    assert value(samples, "mockroom_model_calls_today") == 1
    assert value(samples, "mockroom_model_call_budget_daily") == 1


def test_a_database_failure_is_counted_503(make_user, monkeypatch, scrape):
    user = make_user(tokens=3)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))

    async def database_down(**kwargs):
        raise OperationalError("connection failed: server closed the connection unexpectedly")

    monkeypatch.setattr(services, "aquestion_next", database_down)

    def refuse() -> None:
        response = client.post(next_url(session), {"request_id": "metrics-db"}, **HTMX)
        assert response.status_code == 503

    refused_once(scrape, "database", refuse)


def test_a_model_call_is_timed_and_its_tokens_counted(fake_openai, logged_in, session, scrape):
    before = scrape()
    fake_openai.enqueue(ok(question_payload(text="Why is a model call timed?")))
    response = logged_in.post(next_url(session), {"request_id": "metrics-model"}, **HTMX)
    assert response.status_code == 200
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mockroom_model_calls_total", purpose="question", outcome="ok") == 1
    assert delta("mockroom_model_call_duration_seconds_count", purpose="question") == 1
    assert delta("mockroom_model_call_duration_seconds_sum", purpose="question") > 0
    bucket = "mockroom_model_call_duration_seconds_bucket"
    assert delta(bucket, purpose="question", le="+Inf") == 1
    assert delta("mockroom_model_tokens_total", purpose="question", type="prompt") == 50
    assert delta("mockroom_model_tokens_total", purpose="question", type="completion") == 50
    assert delta("mockroom_questions_served_total", kind="question", source="openai") == 1
    assert value(after, "mockroom_model_calls_in_flight") == 0


def test_feedback_is_counted_by_its_source(logged_in, session, scrape):
    assert (
        logged_in.post(next_url(session), {"request_id": "metrics-fb"}, **HTMX).status_code == 200
    )
    before = value(scrape(), "mockroom_feedback_total", source="rubric")
    url = reverse("interviews:answer", kwargs={"session_id": session.pk, "position": 1})
    assert logged_in.post(url, {"text": "An answer long enough to be graded."}).status_code == 303
    assert value(scrape(), "mockroom_feedback_total", source="rubric") == before + 1


def test_prepared_questions_are_counted_prepared_bought_and_discarded(session, scrape):
    from interviews.services import prepared_discard, question_next, question_prepare

    def prepared(outcome: str) -> float:
        return value(scrape(), "mockroom_prepared_questions_total", outcome=outcome)

    counts = {o: prepared(o) for o in ("prepared", "bought", "discarded")}
    assert question_prepare(session_id=session.pk) == "prepared"
    question_next(session=session, request_id="metrics-prepared-1")  # bought
    assert question_prepare(session_id=session.pk) == "prepared"
    PreparedQuestion.objects.filter(session=session).update(
        created_at=timezone.now() - timedelta(hours=1)
    )
    assert prepared_discard() == 1
    assert prepared("prepared") == counts["prepared"] + 2
    assert prepared("bought") == counts["bought"] + 1
    assert prepared("discarded") == counts["discarded"] + 1


def test_sandbox_runs_are_counted_by_language_and_verdict(db, scrape):
    from interviews.execution import Limits, executor_get

    executor = executor_get()
    if not executor.available:
        pytest.skip(f"the code sandbox is unusable here: {executor.reason}")
    labels = {"language": "python", "verdict": "completed"}
    before = value(scrape(), "mockroom_sandbox_runs_total", **labels)
    report = executor.run(
        language="python",
        code="def f(x):\n    return x + 1\n",
        entry_point="f",
        schema="",
        cases=[{"name": "one", "args": [1]}],
        limits=Limits(cpu_seconds=5, wall_seconds=15),
    )
    assert report.completed
    assert value(scrape(), "mockroom_sandbox_runs_total", **labels) == before + 1


# --- Read from the database when scraped ----------------------------------------------------


def test_a_pending_hold_and_its_age_show(candidate, session, scrape, settings):
    samples = scrape()
    assert value(samples, "mockroom_holds_pending") == 0
    assert value(samples, "mockroom_holds_pending_oldest_age_seconds") == 0
    hold = hold_reserve(
        account=account_get_or_open(user=candidate),
        request_id="metrics-pending",
        purpose=f"question:{session.pk}",
        actor=candidate,
    ).hold
    Hold.objects.filter(pk=hold.pk).update(created_at=timezone.now() - timedelta(seconds=300))
    samples = scrape()
    assert value(samples, "mockroom_holds_pending") == 1
    assert 300 <= value(samples, "mockroom_holds_pending_oldest_age_seconds") < 400
    assert value(samples, "mockroom_hold_ttl_seconds") == settings.HOLD_TTL_SECONDS


def test_the_task_queues_depths_show(db, scrape):
    from ledger.tasks import holds_expire_due

    samples = scrape()
    for queue in ("default", "prefetch", "speech"):  # every queue, empty ones at 0
        assert value(samples, "mockroom_task_queue_depth", queue=queue) == 0
    holds_expire_due.enqueue()
    holds_expire_due.enqueue()
    samples = scrape()
    assert value(samples, "mockroom_task_queue_depth", queue="default") == 2
    assert value(samples, "mockroom_task_queue_oldest_age_seconds", queue="default") >= 0


def test_the_ledger_check_reports_its_outcome(db, scrape):
    started = time.time()
    call_command("ledger_verify", stdout=io.StringIO())
    samples = scrape()
    assert value(samples, "mockroom_ledger_verify_problem_accounts") == 0
    assert value(samples, "mockroom_ledger_verify_last_success_timestamp_seconds") >= started - 1


def test_the_alert_rules_read_only_metrics_that_exist(db, scrape, candidate, session):
    """deploy/prometheus/alerts.yml: every group's rule has an alert, an expression and a
    severity, and every mockroom_* series an expression reads is one /metrics exports."""
    hold_reserve(  # a pending hold: its gauges have a value
        account=account_get_or_open(user=candidate),
        request_id="metrics-alerts",
        purpose=f"question:{session.pk}",
        actor=candidate,
    )
    call_command("ledger_verify", stdout=io.StringIO())
    exported = {name for name, _ in scrape()}
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert text.startswith("groups:")
    alerts = re.findall(r"^\s*- alert: (\w+)$", text, re.M)
    assert len(re.findall(r"^\s*expr: ", text, re.M)) == len(alerts)
    assert len(re.findall(r"^\s*severity: (warning|critical)$", text, re.M)) == len(alerts)
    read = set(re.findall(r"\bmockroom_\w+", text))
    assert read <= exported, read - exported
    assert {"MockroomRefusalRate", "MockroomHoldStuck", "MockroomQueueGrowing"} <= set(alerts)
    assert "MockroomLedgerVerifyFailing" in alerts


# --- Every worker of the production server --------------------------------------------------


class ScrapedServer(ProductionServer):
    """`make serve`'s server, two workers, scraped."""

    def scrape(self, token: str | None = TOKEN) -> tuple[int, Samples]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"{self.url}/metrics", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, parse(response.read().decode())
        except urllib.error.HTTPError as error:
            return error.code, {}


@pytest.fixture
def metrics_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mockroom-metrics-test-") as directory:
        yield Path(directory)


def served_by_pid(directory: Path) -> dict[int, float]:
    """Questions served, per process that served any, from the directory's files."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        served = value(_file_samples(path), "mockroom_questions_served_total")
        if served:
            counts[int(path.stem.split("_")[1])] = served
    return counts


@pytest.mark.django_db(transaction=True)
def test_every_scrape_counts_every_worker_and_a_killed_one(make_user, metrics_dir):
    user = make_user(tokens=100)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    cookies = logged_in_cookies(user)
    path = next_url(session)
    (metrics_dir / "counter_999999.db").write_bytes(b"a previous run's file")
    # Up to 60 questions from one candidate in a few seconds: past the per-user rate limit,
    # which this test is not about (each worker counts its own without Redis).
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": TOKEN,
        "RATE_LIMITS": "false",
    }
    with ScrapedServer(**env) as server:
        assert not (metrics_dir / "counter_999999.db").exists()  # wiped at start
        assert server.scrape(token=None)[0] == 404
        assert server.scrape(token="wrong")[0] == 404
        status_code, samples = server.scrape()
        assert status_code == 200
        assert value(samples, "mockroom_questions_served_total") == 0

        # Questions in bursts until both workers have served some (the kernel decides which
        # worker accepts a connection).
        asked = 0
        for _ in range(10):
            results = run_concurrently(
                lambda n: server.request(
                    path, cookies=cookies, data={"request_id": uuid.uuid4().hex}
                ),
                6,
            )
            assert [code for code, _ in results] == [200] * 6, results
            asked += 6
            if len(served_by_pid(metrics_dir)) == 2:
                break
        workers = served_by_pid(metrics_dir)
        assert len(workers) == 2, workers
        assert sum(workers.values()) == asked

        # Refused requests carry their reason, whichever worker refused them.
        other = make_user(tokens=0)
        broke = session_start(user=other, topic=Topic.objects.get(slug="python"))
        broke_cookies = logged_in_cookies(other)
        for n in range(3):
            status_code, _ = server.request(
                next_url(broke), cookies=broke_cookies, data={"request_id": f"broke-{n:04d}"}
            )
            assert status_code == 402

        # Every scrape, whichever worker answers it, counts them all.
        for _ in range(8):
            status_code, samples = server.scrape()
            assert status_code == 200
            assert value(samples, "mockroom_questions_served_total", kind="question") == asked
            assert value(samples, "mockroom_refusals_total", reason="tokens") == 3
            route = {"route": "interviews:question_next", "method": "POST"}
            assert value(samples, "mockroom_http_requests_total", status="200", **route) == asked
            assert value(samples, "mockroom_holds_pending") == 0
            histogram = "mockroom_model_call_duration_seconds_bucket"
            assert (histogram, frozenset({("purpose", "question"), ("le", "+Inf")})) in samples

        # A worker killed: gunicorn starts another and marks the dead one; its counts stay.
        victim = max(workers, key=lambda pid: workers[pid])
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: (
                victim not in worker_pids(server.process.pid)
                and len(worker_pids(server.process.pid)) == 2
            ),
            seconds=30,
            what="a new worker",
        )
        wait_for(server.answers, seconds=30, what="the server")
        assert not (metrics_dir / f"gauge_livesum_{victim}.db").exists()  # marked dead
        assert (metrics_dir / f"counter_{victim}.db").exists()  # its counts kept
        for _ in range(4):
            status_code, samples = server.scrape()
            assert status_code == 200
            assert value(samples, "mockroom_questions_served_total", kind="question") == asked
            assert value(samples, "mockroom_refusals_total", reason="tokens") == 3
    assert not any(metrics_dir.glob("gauge_livesum_*.db")), "the workers were marked dead"


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_call_leaves_no_call_in_flight(make_user, metrics_dir):
    """The in-flight gauge is a live one: a worker killed while its model call waits drops out
    of it when gunicorn marks it dead."""
    user = make_user(tokens=3)
    session = session_start(user=user, topic=Topic.objects.get(slug="python"))
    cookies = logged_in_cookies(user)
    fake = FakeOpenAI(latency=60.0).start()  # the call outlives the test: only a kill ends it
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": TOKEN,
        "QUESTION_SOURCE": "openai",
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "test-key",
        "LLM_TIMEOUT_SECONDS": "90",
        "LLM_MAX_RETRIES": "0",
    }
    try:
        with ScrapedServer(**env) as server:
            doomed = threading.Thread(
                target=lambda: suppress_all(
                    server.request,
                    next_url(session),
                    cookies=cookies,
                    data={"request_id": "metrics-killed"},
                )
            )
            doomed.start()
            wait_for(lambda: fake.requests >= 1, seconds=15, what="the model call")
            wait_for(
                lambda: value(server.scrape()[1], "mockroom_model_calls_in_flight") == 1,
                seconds=10,
                what="the call in flight",
            )
            killed = []
            for pid in worker_pids(server.process.pid):
                live = metrics_dir / f"gauge_livesum_{pid}.db"
                if value(_file_samples(live), "mockroom_model_calls_in_flight"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            assert len(killed) == 1, killed
            doomed.join(timeout=15)
            wait_for(
                lambda: value(server.scrape()[1], "mockroom_model_calls_in_flight") == 0,
                seconds=30,
                what="the dead worker's call to drop out",
            )
    finally:
        fake.stop()


def _file_samples(path: Path) -> Samples:
    from prometheus_client.multiprocess import MultiProcessCollector

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in MultiProcessCollector.merge([str(path)])
        for sample in family.samples
    }
