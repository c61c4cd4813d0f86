"""Mockroom benchmarks: what the design buys, as ratios of two variants measured side by side.

Run with `make bench` (a throwaway PostgreSQL from .ci/with-postgres). The script creates its own
database, "mockroom_bench", migrates it, runs three benchmarks, drops it, prints a Markdown table
and writes it, with the machine's details, to bench/results/latest.md.

Every benchmark alternates its two variants round after round (the order flips each round, so a
slow drift of the machine hits both alike) and reports the median of each and their ratio.
See bench/README.md for what each one measures and how to read the ratios.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
import secrets
import statistics
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"
BENCH_DB = "mockroom_bench"

# --- knobs: bounded loops, sized for a run well under 3 minutes on 2 cores -------------------

LEDGER_THREADS = 8
LEDGER_GENERATION_SECONDS = 0.050
LEDGER_QUESTIONS_PER_THREAD = 5
LEDGER_ROUNDS = 8
LEDGER_SERIAL_SAMPLES = 20  # reserve + capture alone, one thread: the serialized part

BIG_ACCOUNTS = 300
BIG_VERSIONS = 1000  # 300 accounts x 1000 entries = 300,000 ledger entries
COUNT_ROUNDS = 24
ADMIN_ROUNDS = 12

QUESTION_ROUNDS = 8
QUESTIONS_PER_ROUND = 15  # < 24, the smallest topic pool: no pool reset inside a round


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def bootstrap() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # no per-question INFO lines in the output
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    benchmark: str
    a_label: str
    a_samples: list[float]
    b_label: str
    b_samples: list[float]
    unit: str  # "q/s" or "ms"
    ratio_label: str  # how the ratio is formed, e.g. "A/B"
    ratio: float
    rounds: str

    def cell(self, label: str, samples: list[float]) -> str:
        median = statistics.median(samples)
        digits = 0 if self.unit == "q/s" or median >= 100 else (1 if median >= 10 else 2)
        low, high = min(samples), max(samples)
        return (
            f"{label}: **{median:.{digits}f} {self.unit}** ({low:.{digits}f} to {high:.{digits}f})"
        )


def alternate(
    rounds: int, a: Callable[[int], list[float]], b: Callable[[int], list[float]]
) -> tuple[list[float], list[float]]:
    """Run a and b once per round, A first on even rounds and B first on odd ones."""
    a_samples: list[float] = []
    b_samples: list[float] = []
    for index in range(rounds):
        order = [(a, a_samples), (b, b_samples)]
        if index % 2:
            order.reverse()
        for fn, samples in order:
            samples.extend(fn(index))
    return a_samples, b_samples


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def run_threads(fn: Callable[[int, int], None], threads: int, per_thread: int) -> float:
    """fn(thread, n) per_thread times in each of `threads` threads released together.

    Returns the wall time from the release to the last thread's end. Each thread connects
    before the clock starts and closes its connections at its end.
    """
    from django.db import connection, connections

    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=60)
            for n in range(per_thread):
                fn(index, n)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: see errors
        barrier.wait(timeout=60)
    start = time.perf_counter()
    for thread in pool:
        thread.join(timeout=120)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} benchmark thread(s) failed") from errors[0]
    if any(thread.is_alive() for thread in pool):
        raise RuntimeError("a benchmark thread did not finish within 120 s")
    return elapsed


# --- fixtures --------------------------------------------------------------------------------

_emails = iter(range(1, 1_000_000))


def new_candidate(tokens: int):
    """A candidate signed up through the real service, then granted `tokens` (real service)."""
    from accounts.services import user_signup
    from ledger.models import LedgerEntry
    from ledger.services import tokens_grant

    user = user_signup(
        email=f"bench{next(_emails)}@bench.invalid", password=secrets.token_urlsafe(16)
    )
    tokens_grant(
        account=user.token_account,
        amount=tokens,
        actor=None,
        source=LedgerEntry.Source.SYSTEM,
        reason="Benchmark tokens",
    )
    return user


# --- 1. two-phase ledger vs. a row lock held across generation --------------------------------


def bench_ledger(real_accounts: list[int], notes: list[str]) -> Row:
    from django.db import transaction
    from django.db.models import F

    from ledger.models import Hold, TokenAccount
    from ledger.services import hold_capture, hold_release, hold_reserve

    per_round = LEDGER_THREADS * LEDGER_QUESTIONS_PER_THREAD
    total = per_round * LEDGER_ROUNDS + LEDGER_THREADS  # + one warm-up question per thread
    user = new_candidate(tokens=total + LEDGER_SERIAL_SAMPLES + 10)
    account = user.token_account
    real_accounts.append(account.pk)
    # The baseline's account: decremented with an F-expression, no holds, no ledger entries.
    naive = TokenAccount.objects.create(email="naive@bench.invalid", balance=total + 10)

    def buy(generation_seconds: float) -> None:
        reservation = hold_reserve(
            account=account,
            request_id=uuid.uuid4().hex,
            purpose="bench:question",
            actor=user,
        )
        try:
            time.sleep(generation_seconds)  # the generation: no transaction open
            hold_capture(hold=reservation.hold, reason="Benchmark question", actor=user)
        except BaseException:
            hold_release(hold=reservation.hold, note="benchmark failure", actor=user)
            raise

    def two_phase(thread: int, n: int) -> None:
        buy(LEDGER_GENERATION_SECONDS)

    def lock_held(thread: int, n: int) -> None:
        with transaction.atomic(durable=True):
            TokenAccount.objects.select_for_update().get(pk=naive.pk)
            time.sleep(LEDGER_GENERATION_SECONDS)  # the generation, under the row lock
            TokenAccount.objects.filter(pk=naive.pk).update(balance=F("balance") - 1)

    def throughput(fn: Callable[[int, int], None]) -> Callable[[int], list[float]]:
        def run(_round: int) -> list[float]:
            elapsed = run_threads(fn, LEDGER_THREADS, LEDGER_QUESTIONS_PER_THREAD)
            return [per_round / elapsed]

        return run

    # Warm-up, not counted: one question per thread in each variant.
    run_threads(two_phase, LEDGER_THREADS, 1)
    run_threads(lock_held, LEDGER_THREADS, 1)
    a, b = alternate(LEDGER_ROUNDS, throughput(two_phase), throughput(lock_held))

    # Both phases lock the one account, one after the other across threads: their time
    # without the generation bounds variant A on one account, as the generation bounds B.
    serial = statistics.median(timed_ms(lambda: buy(0.0)) for _ in range(LEDGER_SERIAL_SAMPLES))
    notes.append(
        f"Ledger ceilings on one account: reserve + capture alone (one thread, no generation) "
        f"take {serial:.1f} ms per question here, so the two-phase flow tops out near "
        f"{1000 / serial:.0f} q/s on one account whatever the thread count; holding the lock "
        f"across generation tops out at {1 / LEDGER_GENERATION_SECONDS:.0f} q/s."
    )

    account.refresh_from_db()
    naive.refresh_from_db()
    captured = Hold.objects.filter(account=account, status=Hold.Status.CAPTURED).count()
    expected = (total + LEDGER_SERIAL_SAMPLES, 10, 0, 10)
    if (captured, account.balance, account.held, naive.balance) != expected:
        raise RuntimeError(
            f"ledger benchmark miscounted: {captured} captured of {expected[0]}, "
            f"balance {account.balance}, held {account.held}, baseline balance {naive.balance}"
        )
    return Row(
        benchmark=(
            f"Two-phase ledger vs. row lock held across a "
            f"{LEDGER_GENERATION_SECONDS * 1000:.0f} ms generation, {LEDGER_THREADS} threads, "
            "one account"
        ),
        a_label="two-phase",
        a_samples=a,
        b_label="lock held",
        b_samples=b,
        unit="q/s",
        ratio_label="throughput A/B",
        ratio=statistics.median(a) / statistics.median(b),
        rounds=f"{LEDGER_ROUNDS} x {per_round} q",
    )


# --- 2. the admin's ledger page on a big table ------------------------------------------------


def fill_ledger() -> int:
    """BIG_ACCOUNTS accounts with BIG_VERSIONS grants of 1 each, inserted by one INSERT ... SELECT.

    The rows are what the services would have written (versions 1..N, balance_after = version),
    so these accounts reconcile too.
    """
    from django.db import connection

    from ledger.models import LedgerEntry, TokenAccount

    TokenAccount.objects.bulk_create(
        TokenAccount(
            email=f"bulk-{i:04d}@bench.invalid",
            balance=BIG_VERSIONS,
            held=0,
            version=BIG_VERSIONS,
        )
        for i in range(BIG_ACCOUNTS)
    )
    entries = LedgerEntry._meta.db_table
    accounts = TokenAccount._meta.db_table
    with connection.cursor() as cursor:
        # A synchronous commit, so that VACUUM can mark the new pages all-visible right away
        # (with-postgres runs the server with synchronous_commit=off).
        cursor.execute("SET synchronous_commit TO on")
        cursor.execute(
            f"""
            INSERT INTO {entries} (
                account_id, kind, balance_delta, held_delta, balance_after, held_after, version,
                actor_id, actor_label, source, reason, request_id, hold_id, corrects_id, created_at
            )
            SELECT a.id, 'grant', 1, 0, v, 0, v,
                   NULL, 'System', 'system', 'Benchmark bulk grant', '', NULL, NULL,
                   now() - make_interval(secs => (%s - v) * 3600 + a.id)
            FROM {accounts} AS a CROSS JOIN generate_series(1, %s) AS v
            WHERE a.email LIKE 'bulk-%%@bench.invalid'
            """,
            [BIG_VERSIONS, BIG_VERSIONS],
        )
        inserted = cursor.rowcount
        cursor.execute("RESET synchronous_commit")
        # What autovacuum would have done to a table this size: statistics and visibility map.
        cursor.execute(f"VACUUM ANALYZE {entries}")
        cursor.execute(f"ANALYZE {accounts}")
    return inserted


def bench_count() -> Row:
    from django.core.paginator import Paginator

    from ledger.admin import CappedCountPaginator
    from ledger.models import LedgerEntry

    qs = LedgerEntry.objects.order_by("-created_at", "-id")
    full = qs.count()

    def capped(_round: int) -> list[float]:
        return [timed_ms(lambda: CappedCountPaginator(qs, 100).count)]

    def counted(_round: int) -> list[float]:
        return [timed_ms(lambda: Paginator(qs, 100).count)]

    # Warm the caches.
    capped(0)
    counted(0)
    a, b = alternate(COUNT_ROUNDS, capped, counted)
    return Row(
        benchmark=f"Ledger changelist count, {full:,} entries",
        a_label="CappedCountPaginator",
        a_samples=a,
        b_label="Paginator (COUNT(*))",
        b_samples=b,
        unit="ms",
        ratio_label="time B/A",
        ratio=statistics.median(b) / statistics.median(a),
        rounds=f"{COUNT_ROUNDS} x 1",
    )


def bench_admin_page() -> Row:
    from django.core.paginator import Paginator
    from django.test import Client

    from accounts.models import User
    from ledger.admin import LedgerEntryAdmin
    from ledger.models import LedgerEntry

    staff = User.objects.create_superuser(
        email="staff@bench.invalid", password=secrets.token_urlsafe(16)
    )
    client = Client()
    client.force_login(staff)
    url = "/admin/ledger/ledgerentry/"
    saved = {
        name: LedgerEntryAdmin.__dict__[name] for name in ("paginator", "show_full_result_count")
    }

    def get_page() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")

    def capped(_round: int) -> list[float]:
        return [timed_ms(get_page)]

    def full_count(_round: int) -> list[float]:
        LedgerEntryAdmin.paginator = Paginator
        LedgerEntryAdmin.show_full_result_count = True
        try:
            return [timed_ms(get_page)]
        finally:
            for name, value in saved.items():
                setattr(LedgerEntryAdmin, name, value)

    # Warm templates, sessions, caches.
    capped(0)
    full_count(0)
    a, b = alternate(ADMIN_ROUNDS, capped, full_count)
    return Row(
        benchmark=(
            f"Admin ledger changelist page (GET, superuser), "
            f"{LedgerEntry.objects.count():,} entries"
        ),
        a_label="capped count",
        a_samples=a,
        b_label="Paginator + full count",
        b_samples=b,
        unit="ms",
        ratio_label="time B/A",
        ratio=statistics.median(b) / statistics.median(a),
        rounds=f"{ADMIN_ROUNDS} x 1",
    )


# --- 3. a question end to end -----------------------------------------------------------------


def bench_question(real_accounts: list[int]) -> Row:
    from django.test import Client
    from django.urls import reverse

    from interviews.generation import BankSource
    from interviews.models import Topic
    from interviews.services import question_next, session_start

    topic = Topic.objects.filter(is_active=True).order_by("order", "name").first()
    if topic is None:
        raise RuntimeError("no topic: the question bank was not loaded by migrate")

    def service(_round: int) -> list[float]:
        user = new_candidate(tokens=QUESTIONS_PER_ROUND)
        real_accounts.append(user.token_account.pk)
        session = session_start(user=user, topic=topic, difficulty="medium")
        source = BankSource()
        return [
            timed_ms(
                lambda: question_next(session=session, request_id=uuid.uuid4().hex, source=source)
            )
            for _ in range(QUESTIONS_PER_ROUND)
        ]

    def view(_round: int) -> list[float]:
        user = new_candidate(tokens=QUESTIONS_PER_ROUND)
        real_accounts.append(user.token_account.pk)
        session = session_start(user=user, topic=topic, difficulty="medium")
        client = Client()
        client.force_login(user)
        url = reverse("interviews:question_next", kwargs={"session_id": session.pk})

        def post() -> None:
            response = client.post(url, {"request_id": uuid.uuid4().hex}, HTTP_HX_REQUEST="true")
            if response.status_code != 200:
                raise RuntimeError(f"POST {url} answered {response.status_code}")

        return [timed_ms(post) for _ in range(QUESTIONS_PER_ROUND)]

    # Warm templates, the bank query, the session machinery.
    service(0)
    view(0)
    a, b = alternate(QUESTION_ROUNDS, service, view)
    return Row(
        benchmark=f"A question end to end (bank source, topic {topic.name})",
        a_label="question_next()",
        a_samples=a,
        b_label="HTMX POST view",
        b_samples=b,
        unit="ms",
        ratio_label="time B/A (view/service)",
        ratio=statistics.median(b) / statistics.median(a),
        rounds=f"{QUESTION_ROUNDS} x {QUESTIONS_PER_ROUND} q",
    )


# --- report -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [
        "| Benchmark | A (what Mockroom does) | B (the alternative) | Ratio | Rounds |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.benchmark} | {row.cell(row.a_label, row.a_samples)} "
            f"| {row.cell(row.b_label, row.b_samples)} "
            f"| **{row.ratio:.1f}x** ({row.ratio_label}) | {row.rounds} |"
        )
    return "\n".join(lines)


def machine_info(runtime: float) -> list[str]:
    import django
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Cores: {os.cpu_count()} ({cpu})",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}, Django {django.get_version()}, "
        f"PostgreSQL {pg_version}",
        f"- Runtime: {runtime:.0f} s",
    ]


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    started = time.perf_counter()
    bootstrap()
    from django.conf import settings
    from django.db import connection, connections
    from django.test.utils import override_settings, setup_databases, teardown_databases

    from ledger.selectors import ledger_problems

    if connection.vendor != "postgresql":
        log(
            "the benchmarks need PostgreSQL (row locks, the planner's estimate): run `make bench`, "
            f"or set DATABASE_URL to a PostgreSQL server (got {connection.vendor})."
        )
        return 2

    overrides = override_settings(
        DEBUG=False,
        ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        QUESTION_SOURCE="bank",
        WELCOME_TOKENS=0,
    )
    overrides.enable()
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
    logging.getLogger("django.request").setLevel(logging.ERROR)

    connection.settings_dict["TEST"]["NAME"] = BENCH_DB
    log(f"creating and migrating the database {BENCH_DB!r}")
    old_config = setup_databases(verbosity=0, interactive=False, serialized_aliases=set())
    rows: list[Row] = []
    real_accounts: list[int] = []
    notes: list[str] = []
    try:
        log("1/3 two-phase ledger vs. lock held across generation")
        rows.append(bench_ledger(real_accounts, notes))
        log(f"2/3 inserting {BIG_ACCOUNTS * BIG_VERSIONS:,} ledger entries")
        fill_start = time.perf_counter()
        inserted = fill_ledger()
        log(f"    {inserted:,} rows in {time.perf_counter() - fill_start:.1f} s; timing counts")
        rows.append(bench_count())
        log("    timing the admin changelist page")
        rows.append(bench_admin_page())
        log("3/3 a question end to end: service vs. HTMX view")
        rows.append(bench_question(real_accounts))

        problems = ledger_problems(account_ids=real_accounts)
        if problems:
            reconcile = f"Ledger does NOT reconcile for {len(problems)} account(s):\n" + "\n".join(
                f"- {problem}" for problem in problems
            )
        else:
            reconcile = (
                f"Ledger reconciles (ledger_problems() is empty) for the {len(real_accounts)} "
                "accounts the real services wrote to."
            )
        runtime = time.perf_counter() - started
        info = machine_info(runtime)
    finally:
        connections.close_all()
        teardown_databases(old_config, verbosity=0)
        overrides.disable()

    output = table(rows)
    footer = "\n".join([*notes, reconcile])
    print(output)
    print()
    print(footer)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Mockroom benchmark results\n\n"
        + output
        + "\n\n"
        + footer
        + "\n\n## Machine\n\n"
        + "\n".join(info)
        + "\n",
        encoding="utf-8",
    )
    log(f"wrote {RESULTS.relative_to(ROOT)} in {runtime:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
