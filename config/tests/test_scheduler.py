"""The scheduler enqueues each periodic task once per period, whoever runs it and however often;
the real worker and scheduler processes run the tasks end to end."""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from config.models import ScheduledTask
from config.schedule import SCHEDULE, Periodic
from config.services import periodic_enqueue_if_due, schedule_enqueue_due
from config.testing import run_concurrently
from ledger.models import Hold
from ledger.services import hold_reserve
from ledger.tasks import holds_expire_due, ledger_verify

ROOT = Path(__file__).resolve().parents[2]
# 12:00:30 UTC: half a minute into a per-minute period, twelve hours into a daily one.
NOON = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)
EVERY_MINUTE = Periodic(task=holds_expire_due, every=timedelta(minutes=1))
DAILY = Periodic(task=ledger_verify, every=timedelta(days=1))


def enqueued(periodic: Periodic) -> int:
    return DBTaskResult.objects.filter(task_path=periodic.name).count()


def test_periods_start_on_the_minute_and_at_midnight_utc():
    assert EVERY_MINUTE.period_start(NOON) == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert DAILY.period_start(NOON) == datetime(2026, 3, 2, tzinfo=UTC)


def test_the_schedule_runs_the_sweepers():
    assert {(p.task.name, p.every) for p in SCHEDULE} == {
        ("holds_expire_due", timedelta(minutes=1)),
        ("prepared_questions_discard", timedelta(minutes=1)),
        ("purchases_check", timedelta(minutes=5)),
        ("sessions_clear_expired", timedelta(days=1)),
        ("ledger_verify", timedelta(days=1)),
        ("task_results_prune", timedelta(days=1)),
    }


def test_a_due_task_is_enqueued_once_and_not_again_within_its_period(db):
    first = periodic_enqueue_if_due(periodic=EVERY_MINUTE, now=NOON)
    assert first is not None
    assert DBTaskResult.objects.get(pk=first.id).task_path == EVERY_MINUTE.name
    assert periodic_enqueue_if_due(periodic=EVERY_MINUTE, now=NOON) is None
    assert periodic_enqueue_if_due(periodic=EVERY_MINUTE, now=NOON + timedelta(seconds=29)) is None
    assert enqueued(EVERY_MINUTE) == 1

    assert periodic_enqueue_if_due(periodic=EVERY_MINUTE, now=NOON + timedelta(seconds=30))
    assert enqueued(EVERY_MINUTE) == 2
    row = ScheduledTask.objects.get(name=EVERY_MINUTE.name)
    assert row.period_start == datetime(2026, 3, 2, 12, 1, tzinfo=UTC)


def test_each_task_keeps_its_own_period(db):
    assert len(schedule_enqueue_due(now=NOON)) == len(SCHEDULE)
    assert schedule_enqueue_due(now=NOON + timedelta(seconds=10)) == []
    again = schedule_enqueue_due(now=NOON + timedelta(minutes=1))
    every_minute = [p for p in SCHEDULE if p.every == timedelta(minutes=1)]
    assert {result.task.func for result in again} == {p.task.func for p in every_minute}
    assert holds_expire_due.func in {result.task.func for result in again}
    assert enqueued(DAILY) == 1


def test_a_scheduler_that_was_down_enqueues_a_missed_period_once(db):
    periodic_enqueue_if_due(periodic=DAILY, now=NOON - timedelta(days=3))
    back = NOON + timedelta(hours=5)
    assert periodic_enqueue_if_due(periodic=DAILY, now=back) is not None
    assert periodic_enqueue_if_due(periodic=DAILY, now=back + timedelta(hours=1)) is None
    assert enqueued(DAILY) == 2


def test_a_scheduler_whose_clock_is_behind_enqueues_nothing(db):
    periodic_enqueue_if_due(periodic=DAILY, now=NOON)
    assert periodic_enqueue_if_due(periodic=DAILY, now=NOON - timedelta(days=1)) is None
    assert enqueued(DAILY) == 1


@pytest.mark.django_db(transaction=True)
def test_schedulers_racing_for_a_period_enqueue_it_once():
    # The first period creates the row (a race on its unique name); the next one claims it (a
    # race of conditional UPDATEs).
    for now in (NOON, NOON + timedelta(minutes=1)):
        results = run_concurrently(
            lambda _, now=now: periodic_enqueue_if_due(periodic=EVERY_MINUTE, now=now), 6
        )
        assert not [r for r in results if isinstance(r, BaseException)]
        assert len([r for r in results if r is not None]) == 1
    assert enqueued(EVERY_MINUTE) == 2


def test_run_scheduler_once_enqueues_what_is_due(db, capsys):
    call_command("run_scheduler", "--once")
    call_command("run_scheduler", "--once")
    out = capsys.readouterr().out
    assert out.count("Enqueued holds_expire_due") in (1, 2)  # 2 only across a minute boundary
    assert out.count("Enqueued ledger_verify") == 1
    assert DBTaskResult.objects.count() == out.count("Enqueued")


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT']}/{db['NAME']}"


def manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", *args]


def process_env() -> dict[str, str]:
    return {
        **os.environ,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "DATABASE_URL": database_url(),
        "DB_POOL_MAX_SIZE": "2",
    }


@pytest.mark.django_db(transaction=True)
def test_make_worker_processes_enqueue_and_run_an_expiry(make_user):
    """The two commands `make worker` starts, as processes on the test database: the scheduler
    enqueues the due tasks and stops cleanly on SIGTERM; the worker runs them."""
    account = make_user(tokens=1).token_account
    hold = hold_reserve(account=account, request_id="died", purpose="p", actor=None).hold
    Hold.objects.filter(pk=hold.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    scheduler = subprocess.Popen(manage("run_scheduler"), cwd=ROOT, env=process_env())
    try:
        deadline = time.monotonic() + 60
        while DBTaskResult.objects.count() < len(SCHEDULE) and time.monotonic() < deadline:
            time.sleep(0.2)
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(timeout=30) == 0
    finally:
        scheduler.kill()
    assert DBTaskResult.objects.count() == len(SCHEDULE)

    worker = subprocess.run(
        manage("db_worker", "--batch", "--no-startup-delay", "--no-reload"),
        cwd=ROOT,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert worker.returncode == 0, worker.stdout + worker.stderr
    statuses = dict(DBTaskResult.objects.values_list("task_path", "status"))
    assert set(statuses.values()) == {"SUCCESSFUL"}, statuses
    expiry = DBTaskResult.objects.get(task_path=EVERY_MINUTE.name)
    assert expiry.return_value == 1
    hold.refresh_from_db()
    assert hold.status == Hold.Status.EXPIRED
