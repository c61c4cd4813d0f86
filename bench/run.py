"""Mockroom benchmarks: what the design buys, as ratios of two variants measured side by side.

Run with `make bench` (a throwaway PostgreSQL from .ci/with-postgres). The script creates its own
database, "mockroom_bench", migrates it, copies it to "mockroom_bench_small" (for the one
benchmark that compares two table sizes), runs four benchmarks, drops both, prints a Markdown
table and writes it, with the machine's details, to bench/results/latest.md.

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

# --- knobs: bounded loops, sized for a run under 3 minutes on 2 cores -----------------------

LEDGER_THREADS = 8
LEDGER_GENERATION_SECONDS = 0.050
LEDGER_QUESTIONS_PER_THREAD = 5
LEDGER_ROUNDS = 8
LEDGER_SERIAL_SAMPLES = 20  # reserve + capture alone, one thread: the serialized part

# The admin's ledger page: the bench database gets BIG_ACCOUNTS x VERSIONS entries, a second
# database on the same server (SMALL_DB, a copy of the freshly migrated one) SMALL_ACCOUNTS x
# VERSIONS. Each account's entries are versions 1..VERSIONS.
SMALL_DB = f"{BENCH_DB}_small"
VERSIONS = 1000
BIG_ACCOUNTS = 1000  # 1,000,000 entries
SMALL_ACCOUNTS = 10  # 10,000 entries
FILL_THREADS = 2
COUNT_ROUNDS = 24
ADMIN_ROUNDS = 12
ADMIN_SIZE_ROUNDS = 12
ADMIN_SIZE_GETS = 2  # timed GETs per variant and round, after one untimed GET (a new connection)

QUESTION_ROUNDS = 8
QUESTIONS_PER_ROUND = 15  # < 24, the smallest topic pool: no pool reset inside a round

# Next question vs. pool size and history: (active questions, already served to the candidate).
POOL_BIG = (2000, 1000)
POOL_SMALL = (20, 10)
POOL_ROUNDS = 10
POOL_QUESTIONS_PER_ROUND = 5  # < 20 - 10 unseen in the small pool: no pool reset


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def bootstrap() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # no per-question INFO lines in the output
    # The admin benchmarks log a staff member in directly: what they time is the ledger's list,
    # not the second factor the admin asks staff for in production.
    os.environ.setdefault("STAFF_MFA_REQUIRED", "false")
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


def run_threads(
    fn: Callable[[int, int], None], threads: int, per_thread: int, join_timeout: float = 120
) -> float:
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
        thread.join(timeout=join_timeout)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} benchmark thread(s) failed") from errors[0]
    if any(thread.is_alive() for thread in pool):
        raise RuntimeError(f"a benchmark thread did not finish within {join_timeout:.0f} s")
    return elapsed


# --- fixtures --------------------------------------------------------------------------------

_emails = iter(range(1, 1_000_000))


def new_candidate(tokens: int):
    """A candidate signed up through the real service, then granted `tokens` (real service)."""
    from accounts.services import user_signup
    from ledger.models import LedgerEntry
    from ledger.services import account_grant

    user = user_signup(
        email=f"bench{next(_emails)}@bench.invalid", password=secrets.token_urlsafe(16)
    )
    account_grant(
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


def disconnect() -> None:
    """Close the default connection and, when settings pool connections, the pool too."""
    from django.db import connection

    connection.close()
    if hasattr(connection, "close_pool"):
        connection.close_pool()  # a pool keeps idle connections to the database it was made for


def use_database(name: str) -> None:
    """Point the default connection at another database of the same server (reconnects lazily).

    Side by side on two databases: one process, one settings module, the connection switched
    between rounds. Callers put BENCH_DB back before the teardown, which drops the current NAME.
    """
    from django.db import connection

    if connection.settings_dict["NAME"] != name:
        disconnect()
        connection.settings_dict["NAME"] = name


def drop_database(name: str) -> None:
    from django.db import connection

    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")


def copy_database(source: str, name: str) -> None:
    """CREATE DATABASE name WITH TEMPLATE source (no connection to source may be open)."""
    from django.db import connection

    use_database(source)
    disconnect()
    drop_database(name)
    quote = connection.ops.quote_name
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {quote(name)} WITH TEMPLATE {quote(source)}")


def fill_ledger(accounts: int) -> int:
    """`accounts` accounts with VERSIONS grants of 1 each, inserted by INSERT ... SELECT.

    The rows are what the services would have written (versions 1..N, balance_after = version),
    so these accounts reconcile too. Fills the database the default connection points at.

    For speed (a million rows on 2 cores): the table's indexes that back no constraint are
    dropped first and recreated afterwards from their own definitions (pg_get_indexdef), so the
    schema ends as migrate left it; and the insert is split by account over FILL_THREADS
    connections.
    """
    from django.db import connection

    from ledger.models import LedgerEntry, TokenAccount

    TokenAccount.objects.bulk_create(
        TokenAccount(
            email=f"bulk-{i:05d}@bench.invalid",
            balance=VERSIONS,
            held=0,
            version=VERSIONS,
        )
        for i in range(accounts)
    )
    entries = LedgerEntry._meta.db_table
    accounts_table = TokenAccount._meta.db_table
    inserted: list[int] = []

    def insert_part(thread: int, _n: int) -> None:
        with connection.cursor() as cursor:
            # A synchronous commit, so that VACUUM can mark the new pages all-visible right away
            # (with-postgres runs the server with synchronous_commit=off); and no statement
            # timeout (settings may set one, DB_STATEMENT_TIMEOUT_MS).
            cursor.execute("SET synchronous_commit TO on")
            cursor.execute("SET statement_timeout TO 0")
            cursor.execute(
                f"""
                INSERT INTO {entries} (
                    account_id, kind, balance_delta, held_delta, balance_after, held_after,
                    version, actor_id, actor_label, source, reason, request_id, hold_id,
                    corrects_id, created_at
                )
                SELECT a.id, 'grant', 1, 0, v, 0, v,
                       NULL, 'System', 'system', 'Benchmark bulk grant', '', NULL, NULL,
                       now() - make_interval(secs => (%s - v) * 3600 + a.id)
                FROM {accounts_table} AS a CROSS JOIN generate_series(1, %s) AS v
                WHERE a.email LIKE 'bulk-%%@bench.invalid' AND a.id %% %s = %s
                """,
                [VERSIONS, VERSIONS, FILL_THREADS, thread],
            )
            inserted.append(cursor.rowcount)
            # A pooled connection keeps its session settings: put them back.
            cursor.execute("RESET synchronous_commit")
            cursor.execute("RESET statement_timeout")

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout TO 0")
        cursor.execute(
            """
            SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index AS i
            WHERE i.indrelid = %s::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)
            """,
            [entries],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        try:
            run_threads(insert_part, FILL_THREADS, 1, join_timeout=600)
        finally:
            cursor.execute("SET maintenance_work_mem TO '128MB'")
            for _, definition in indexes:
                cursor.execute(definition)
            cursor.execute("RESET maintenance_work_mem")
        # What autovacuum would have done to a table this size: statistics and visibility map.
        cursor.execute(f"VACUUM ANALYZE {entries}")
        cursor.execute(f"ANALYZE {accounts_table}")
        cursor.execute("RESET statement_timeout")
    return sum(inserted)


def staff_client():
    """A superuser in the current database and a django.test.Client logged in as them."""
    from django.test import Client

    from accounts.models import User

    staff = User.objects.create_superuser(
        email="staff@bench.invalid", password=secrets.token_urlsafe(16)
    )
    client = Client()
    client.force_login(staff)  # the session row goes to the current database
    return client


ADMIN_LEDGER_URL = "/admin/ledger/ledgerentry/"


def get_admin_page(client) -> None:
    response = client.get(ADMIN_LEDGER_URL)
    if response.status_code != 200:
        raise RuntimeError(f"GET {ADMIN_LEDGER_URL} answered {response.status_code}")


def entry_count() -> int:
    from ledger.models import LedgerEntry

    return LedgerEntry.objects.count()


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


def bench_admin_page(client) -> Row:
    from django.core.paginator import Paginator

    from ledger.admin import LedgerEntryAdmin

    saved = {
        name: LedgerEntryAdmin.__dict__[name] for name in ("paginator", "show_full_result_count")
    }

    def capped(_round: int) -> list[float]:
        return [timed_ms(lambda: get_admin_page(client))]

    def full_count(_round: int) -> list[float]:
        LedgerEntryAdmin.paginator = Paginator  # type: ignore[assignment]  # the uncapped count
        LedgerEntryAdmin.show_full_result_count = True
        try:
            return [timed_ms(lambda: get_admin_page(client))]
        finally:
            for name, value in saved.items():
                setattr(LedgerEntryAdmin, name, value)

    # Warm templates, sessions, caches.
    capped(0)
    full_count(0)
    a, b = alternate(ADMIN_ROUNDS, capped, full_count)
    return Row(
        benchmark=f"Admin ledger changelist page (GET, superuser), {entry_count():,} entries",
        a_label="capped count",
        a_samples=a,
        b_label="Paginator + full count",
        b_samples=b,
        unit="ms",
        ratio_label="time B/A",
        ratio=statistics.median(b) / statistics.median(a),
        rounds=f"{ADMIN_ROUNDS} x 1",
    )


def bench_admin_size(big_client, small_client, notes: list[str]) -> Row:
    """The real changelist on BENCH_DB (about a million entries) and on SMALL_DB (10,000)."""

    def page(database: str, client) -> Callable[[int], list[float]]:
        def run(_round: int) -> list[float]:
            use_database(database)
            # Untimed: the switch opened a new connection, whose first queries load the
            # server's catalog caches. The timed GETs then run on a warm connection.
            get_admin_page(client)
            return [timed_ms(lambda: get_admin_page(client)) for _ in range(ADMIN_SIZE_GETS)]

        return run

    use_database(SMALL_DB)
    small = entry_count()
    use_database(BENCH_DB)
    big = entry_count()
    a, b = alternate(ADMIN_SIZE_ROUNDS, page(BENCH_DB, big_client), page(SMALL_DB, small_client))
    use_database(BENCH_DB)
    ratio = statistics.median(a) / statistics.median(b)
    notes.append(
        f"Admin changelist, {big:,} vs {small:,} entries: {ratio:.2f}x, goal <= 1.2x "
        f"({'met' if ratio <= 1.2 else 'NOT met'})."
    )
    return Row(
        benchmark=(
            f"Admin ledger changelist page (GET, superuser) on {big:,} vs {small:,} entries, "
            "two databases"
        ),
        a_label=f"{big / 1e6:.1f}M entries",
        a_samples=a,
        b_label=f"{small / 1e3:.0f}k entries",
        b_samples=b,
        unit="ms",
        ratio_label="time A/B, goal <= 1.2x",
        ratio=ratio,
        rounds=f"{ADMIN_SIZE_ROUNDS} x {ADMIN_SIZE_GETS}",
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


# --- 4. next question vs. pool size and history -----------------------------------------------


def pool_topic(slug: str, size: int):
    """A topic of `size` active staff questions (medium, 3 key points), by one bulk_create."""
    from interviews.models import Difficulty, Question, Topic, question_fingerprint

    topic = Topic.objects.create(
        slug=slug, name=f"Benchmark pool of {size:,}", description="Benchmark topic", order=900
    )
    questions = []
    for i in range(1, size + 1):
        text = (
            f"Benchmark question {i} of {size}: how would you design, test and operate "
            f"component number {i} of a web application, and what would you watch in production?"
        )
        questions.append(
            Question(
                topic=topic,
                difficulty=Difficulty.MEDIUM,
                text=text,
                fingerprint=question_fingerprint(text),  # bulk_create skips save()
                key_points=[
                    f"the interface and the data of component {i}",
                    "unit and integration tests at the boundaries",
                    "metrics, logs and alerts for its failure modes",
                ],
                outline=(
                    "Start from what the component must do and the data it owns, then how it is "
                    "tested in isolation and with its neighbours, then what is monitored once it "
                    "runs, and how a failure shows up and is handled."
                ),
                source=Question.Source.STAFF,
            )
        )
    Question.objects.bulk_create(questions, batch_size=1000)
    return topic


# The served history, as question_next would have written it: per question a captured hold, its
# HOLD and DEBIT entries, and the served question that names both, ids in the order of time (the
# flow reads "newest" by id). One statement.
HISTORY_SQL = """
WITH grant_entry AS (
    INSERT INTO {entries} (
        account_id, kind, balance_delta, held_delta, balance_after, held_after, version,
        actor_id, actor_label, source, reason, request_id, hold_id, corrects_id, created_at
    )
    VALUES (%(account)s, 'grant', %(grant)s, 0, %(balance)s + %(grant)s, 0, %(version)s + 1,
            NULL, 'System', 'system', 'Benchmark tokens', '', NULL, NULL, %(start)s)
), series AS MATERIALIZED (
    SELECT n, replace(gen_random_uuid()::text, '-', '') AS request_id,
           %(start)s + make_interval(mins => n) AS at
    FROM generate_series(1, %(served)s) AS n
), holds AS (
    INSERT INTO {holds} (
        account_id, request_id, purpose, amount, status, expires_at, created_at, resolved_at,
        resolution_note
    )
    SELECT %(account)s, request_id, %(purpose)s, 1, 'captured',
           at + make_interval(secs => %(ttl)s), at, at + interval '1 second', ''
    FROM series
    ORDER BY n
    RETURNING id, request_id
), numbered AS (
    SELECT holds.id, series.n, series.request_id, series.at
    FROM holds JOIN series USING (request_id)
), debits AS (
    INSERT INTO {entries} (
        account_id, kind, balance_delta, held_delta, balance_after, held_after, version,
        actor_id, actor_label, source, reason, request_id, hold_id, corrects_id, created_at
    )
    SELECT %(account)s, k.kind, -k.debit, 1 - 2 * k.debit,
           %(balance)s + %(grant)s - (h.n - 1) - k.debit, 1 - k.debit,
           %(version)s + 1 + 2 * h.n - 1 + k.debit,
           %(user)s, %(email)s, 'web', k.reason, h.request_id, h.id, NULL,
           h.at + make_interval(secs => k.debit)
    FROM numbered AS h CROSS JOIN (
        VALUES ('hold', 0, 'Reserved until delivery.'),
               ('debit', 1, 'Question (benchmark history)')
    ) AS k (kind, debit, reason)
    ORDER BY h.n, k.debit
    RETURNING id, hold_id, kind
)
INSERT INTO {served} (
    session_id, user_id, topic_id, question_id, position, cycle, hold_id, debit_id, served_at,
    feedback_requests, depth
)
SELECT %(session)s, %(user)s, %(topic)s, q.id, h.n, 1, h.id, d.id, h.at + interval '1 second', 0,
       0
FROM numbered AS h
JOIN debits AS d ON d.hold_id = h.id AND d.kind = 'debit'
JOIN (
    SELECT id, row_number() OVER (ORDER BY id) AS n
    FROM {questions} WHERE topic_id = %(topic)s AND is_active AND follows_id IS NULL
) AS q ON q.n = h.n
ORDER BY h.n
"""


def candidate_with_history(topic, served: int, to_buy: int):
    """A candidate who was served `served` questions of `topic` (cycle 1) in an ended session,
    with a grant of served + to_buy tokens, and a new session in that topic to buy from.

    The history is written in bulk, entry for entry what the services would have written, so
    account_problem_list() finds nothing to say about the account.
    """
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from accounts.services import user_signup
    from interviews.models import Difficulty, InterviewSession, Question, ServedQuestion
    from ledger.models import Hold, LedgerEntry, TokenAccount

    user = user_signup(
        email=f"bench{next(_emails)}@bench.invalid", password=secrets.token_urlsafe(16)
    )
    account = TokenAccount.objects.get(user=user)
    start = timezone.now() - dt.timedelta(minutes=served + 10)
    earlier = InterviewSession.objects.create(user=user, topic=topic, difficulty=Difficulty.MEDIUM)
    InterviewSession.objects.filter(pk=earlier.pk).update(
        started_at=start, ended_at=start + dt.timedelta(minutes=served + 1)
    )
    grant = served + to_buy
    sql = HISTORY_SQL.format(
        entries=LedgerEntry._meta.db_table,
        holds=Hold._meta.db_table,
        served=ServedQuestion._meta.db_table,
        questions=Question._meta.db_table,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            sql,
            {
                "account": account.pk,
                "balance": account.balance,
                "version": account.version,
                "grant": grant,
                "start": start,
                "served": served,
                "purpose": f"question:{earlier.pk}",
                "ttl": settings.HOLD_TTL_SECONDS,
                "user": user.pk,
                "email": user.email,
                "session": earlier.pk,
                "topic": topic.pk,
            },
        )
        if cursor.rowcount != served:
            raise RuntimeError(f"history of {served} wrote {cursor.rowcount} served questions")
        in_id_order = ServedQuestion.objects.filter(session=earlier).order_by("pk")
        if list(in_id_order.values_list("position", flat=True)) != list(range(1, served + 1)):
            raise RuntimeError("the history's ids are not in the order it was served")
        TokenAccount.objects.filter(pk=account.pk).update(
            balance=account.balance + grant - served, version=account.version + 1 + 2 * served
        )
    session = InterviewSession.objects.create(user=user, topic=topic, difficulty=Difficulty.MEDIUM)
    return user, session


def bench_pool_size(real_accounts: list[int], notes: list[str]) -> Row:
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from interviews.models import Question, ServedQuestion
    from ledger.models import Hold, LedgerEntry, TokenAccount
    from ledger.selectors import account_problem_list

    per_round = POOL_QUESTIONS_PER_ROUND
    variants = {}
    for name, (size, served) in (("big", POOL_BIG), ("small", POOL_SMALL)):
        topic = pool_topic(f"bench-pool-{size}", size)
        # One candidate per round (+1 for the warm-up): every sample starts from the same state.
        variants[name] = (
            topic,
            served,
            [candidate_with_history(topic, served, per_round) for _ in range(POOL_ROUNDS + 1)],
        )
    accounts = [
        user.token_account.pk for _, _, candidates in variants.values() for user, _ in candidates
    ]
    problems = account_problem_list(account_ids=accounts)
    if problems:
        raise RuntimeError(f"the bulk history does not reconcile: {problems[0]}")
    real_accounts.extend(accounts)
    with connection.cursor() as cursor:  # what autovacuum would do after such inserts
        for model in (Question, ServedQuestion, Hold, LedgerEntry, TokenAccount):
            cursor.execute(f"ANALYZE {model._meta.db_table}")

    def buy(candidates) -> Callable[[int], list[float]]:
        def run(index: int) -> list[float]:
            user, session = candidates[index]
            client = Client()
            client.force_login(user)
            url = reverse("interviews:question_next", kwargs={"session_id": session.pk})

            def post() -> None:
                response = client.post(
                    url, {"request_id": uuid.uuid4().hex}, HTTP_HX_REQUEST="true"
                )
                if response.status_code != 200:
                    raise RuntimeError(f"POST {url} answered {response.status_code}")

            return [timed_ms(post) for _ in range(per_round)]

        return run

    big_candidates, small_candidates = variants["big"][2], variants["small"][2]
    # Warm-up with the spare candidate of each variant.
    buy(big_candidates)(POOL_ROUNDS)
    buy(small_candidates)(POOL_ROUNDS)
    a, b = alternate(POOL_ROUNDS, buy(big_candidates), buy(small_candidates))

    # Every candidate bought exactly per_round new questions, all in the first pass.
    for topic, served, candidates in variants.values():
        for user, _ in candidates:
            history = ServedQuestion.objects.filter(user=user, topic=topic)
            cycles = set(history.values_list("cycle", flat=True))
            balance = TokenAccount.objects.get(user=user).balance
            if (history.count(), cycles, balance) != (served + per_round, {1}, 0):
                raise RuntimeError(
                    f"pool benchmark miscounted for {user.email}: {history.count()} served "
                    f"(expected {served + per_round}), cycles {sorted(cycles)}, balance {balance}"
                )
    ratio = statistics.median(a) / statistics.median(b)
    notes.append(
        f"Next question, pool of {POOL_BIG[0]:,} with {POOL_BIG[1]:,} served vs. "
        f"{POOL_SMALL[0]} with {POOL_SMALL[1]} served: {ratio:.2f}x, goal <= 1.5x "
        f"({'met' if ratio <= 1.5 else 'NOT met'})."
    )
    return Row(
        benchmark=(
            "Next question (HTMX POST view, bank source) vs. pool size and history, "
            "one fresh candidate per round and variant"
        ),
        a_label=f"pool {POOL_BIG[0]:,}, {POOL_BIG[1]:,} served",
        a_samples=a,
        b_label=f"pool {POOL_SMALL[0]}, {POOL_SMALL[1]} served",
        b_samples=b,
        unit="ms",
        ratio_label="time A/B, goal <= 1.5x",
        ratio=ratio,
        rounds=f"{POOL_ROUNDS} x {per_round} q",
    )


# --- report -----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    lines = [
        "| Benchmark | A | B | Ratio | Rounds |",
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

    from ledger.selectors import account_problem_list

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
    clients: dict[str, object] = {}
    try:
        # The small database of benchmark 2: a copy of the freshly migrated one.
        log(f"copying it to {SMALL_DB!r}")
        copy_database(BENCH_DB, SMALL_DB)
        use_database(BENCH_DB)
        log("1/4 two-phase ledger vs. lock held across generation")
        rows.append(bench_ledger(real_accounts, notes))
        for database, accounts in ((SMALL_DB, SMALL_ACCOUNTS), (BENCH_DB, BIG_ACCOUNTS)):
            log(f"2/4 inserting {accounts * VERSIONS:,} ledger entries into {database!r}")
            use_database(database)
            fill_start = time.perf_counter()
            inserted = fill_ledger(accounts)
            log(f"    {inserted:,} rows in {time.perf_counter() - fill_start:.1f} s")
            clients[database] = staff_client()
        log("    timing counts")
        rows.append(bench_count())
        log("    timing the admin changelist page: capped vs. full count")
        rows.append(bench_admin_page(clients[BENCH_DB]))
        log("    timing the admin changelist page: big vs. small database")
        rows.append(bench_admin_size(clients[BENCH_DB], clients[SMALL_DB], notes))
        log("3/4 a question end to end: service vs. HTMX view")
        rows.append(bench_question(real_accounts))
        log(
            f"4/4 next question, pool of {POOL_BIG[0]:,} with {POOL_BIG[1]:,} served vs. "
            f"{POOL_SMALL[0]} with {POOL_SMALL[1]} served"
        )
        rows.append(bench_pool_size(real_accounts, notes))

        problems = account_problem_list(account_ids=real_accounts)
        if problems:
            reconcile = f"Ledger does NOT reconcile for {len(problems)} account(s):\n" + "\n".join(
                f"- {problem}" for problem in problems
            )
        else:
            reconcile = (
                f"Ledger reconciles (account_problem_list() is empty) for the {len(real_accounts)} "
                "accounts the real services wrote to (benchmark 4's bulk histories included)."
            )
        runtime = time.perf_counter() - started
        info = machine_info(runtime)
    finally:
        connections.close_all()
        use_database(BENCH_DB)  # the teardown drops the database the connection names
        try:
            drop_database(SMALL_DB)
        finally:
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
