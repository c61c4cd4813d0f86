"""Stripe's webhook on the production server: what one `checkout.session.completed` costs, and
100 purchases paid at once with every event delivered three times concurrently.

    SECRET_KEY=x .ci/with-postgres .venv/bin/python bench/buying.py

The server is started as `make serve` starts it (deploy/gunicorn.conf.py, uvicorn workers), on a
free port of 127.0.0.1, against a fresh database (mockroom_payments, dropped before and after),
with PAYMENTS_PROVIDER=stripe pointed at a fake Stripe API on loopback (payments/tests/
fake_stripe.py, started in this process). The candidates and their purchases are made in this
process, through the real services: a user, a token account with its welcome tokens, and
`checkout_start` (the purchase, then its Checkout Session on the fake). The fake then marks each
session paid, and its `checkout.session.completed` event is signed with the webhook secret as
Stripe signs it and POSTed to /payments/stripe/webhook/.

1. CPU per event: one worker, one keep-alive connection, distinct events one after another
   (after an uncounted warm-up). The server's CPU (master and worker) and PostgreSQL's are read
   from /proc around each batch and divided by its size (the kernel counts in 10 ms ticks,
   hence batches); wall time is per request, from the client. Then the same events again:
   what a replay costs.
2. Concurrency: two workers; 100 candidates' events, each POSTed 3 times at once (300 requests
   in flight, each on its own connection, each with a timeout). Then: exactly one grant per
   purchase, every balance = welcome + pack, every answer a 200 (one not a replay per event),
   no deadlock in the server's log, and `manage.py ledger_verify` exits 0.

The table goes to stdout and bench/results/payments.md, the servers' logs to
bench/results/payments-logs/, progress to stderr. Exit code 1 when a correctness check fails
(CPU above the goal is reported, not a failure), 2 when the setup fails. Every loop has a fixed
count, every wait a timeout; the servers are stopped (their process group) at the end, also on
Ctrl-C. About a minute on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
import psycopg
from load import (
    Connection,
    Processes,
    Response,
    SetupError,
    database_url,
    find_postmaster,
    libpq_url,
    manage,
    proc_table,
    program,
    scan_log,
    tree_cpu,
    wait_healthy,
)

if TYPE_CHECKING:
    from payments.tests.fake_stripe import FakeStripe

ROOT = load.ROOT
BENCH_DB = "mockroom_payments"
RESULTS = Path(__file__).resolve().parent / "results" / "payments.md"
LOG_DIR = Path(__file__).resolve().parent / "results" / "payments-logs"
WEBHOOK = "/payments/stripe/webhook/"

# --- knobs: every loop a fixed count, every wait a timeout -----------------------------------

CPU_GOAL_MS = 20.0  # the goal: webhook processing, server CPU per event, p50
WARMUP_EVENTS = 20
BATCH = 25  # events per CPU reading (10 ms ticks: 25 x ~10 ms reads to about 1 ms per event)
BATCHES = 8  # 200 distinct events
REPLAY_BATCHES = 4  # 100 replays of those events
CANDIDATES = 100  # row 2: purchases paid at once
DELIVERIES = 3  # each event POSTed this many times at once
CONCURRENT_WARMUP = 8  # row 2: events before the window, so that both workers have loaded
REQUEST_TIMEOUT = 60.0
WINDOW_TIMEOUT = 120.0
WELCOME_TOKENS = 10
PACK_CODES = ("starter", "standard", "intensive")  # the packs on sale, in turn

# A test-mode key and secret of this run's own: the server and the signer share them.
STRIPE_SECRET_KEY = "sk_test_bench_payments"
WEBHOOK_SECRET = "whsec_bench_" + secrets.token_hex(16)


def log(message: str) -> None:
    print(f"payments: {message}", file=sys.stderr, flush=True)


# --- the server ------------------------------------------------------------------------------


def serve_argv() -> list[str]:
    """`make serve`'s command, bound to 127.0.0.1:{port} (the options after -c override it)."""
    if (ROOT / "deploy" / "gunicorn.conf.py").exists():
        return (
            "gunicorn -c deploy/gunicorn.conf.py config.asgi:application --bind 127.0.0.1:{port}"
        ).split()
    return (  # the Makefile's options before they moved to deploy/gunicorn.conf.py
        "gunicorn config.asgi:application --worker-class uvicorn_worker.UvicornWorker "
        "--bind 127.0.0.1:{port} --workers {workers} --graceful-timeout 60 --access-logfile - "
        "--no-control-socket"
    ).split()


def server_env(bench_url: str) -> dict[str, str]:
    """Production settings by environment: DEBUG off, Stripe, no rate limits."""
    return dict(os.environ) | {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),
        "DATABASE_URL": bench_url,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "RATE_LIMITS": "false",
        "QUESTION_SOURCE": "bank",
        "PAYMENTS_PROVIDER": "stripe",
        "STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "WELCOME_TOKENS": str(WELCOME_TOKENS),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    log_path: Path


async def server_start(procs: Processes, env: dict[str, str], workers: int) -> Server:
    port = load.free_port()
    argv = [arg.replace("{workers}", str(workers)) for arg in serve_argv()]
    log_path = LOG_DIR / f"server-{workers}w.log"
    with log_path.open("wb") as output:
        pid = procs.start(program(argv, port), env | {"WEB_CONCURRENCY": str(workers)}, output)
    started = await wait_healthy(procs.get(pid), port, log_path)
    log(f"  server up in {started:.1f} s: {workers} worker(s) on port {port}")
    return Server(pid=pid, port=port, log_path=log_path)


# --- candidates, purchases and their events (in this process, through the services) ----------


@dataclass(frozen=True)
class Paid:
    """A purchase paid on the fake Stripe, and its checkout.session.completed event."""

    purchase_id: str
    account_id: int
    tokens: int
    event: dict[str, Any]

    def delivery(self) -> tuple[bytes, dict[str, str]]:
        """A delivery as Stripe sends it, signed now (the signature's timestamp is checked)."""
        from payments.tests.fake_stripe import signed

        body, header = signed(self.event, secret=WEBHOOK_SECRET)
        return body, {"Content-Type": "application/json", "Stripe-Signature": header}


def django_setup(env: dict[str, str]) -> None:
    # This process's own settings: the server's, with no connection pool (one thread here).
    os.environ.update(env | {"DB_POOL_MAX_SIZE": "0", "CONN_MAX_AGE": "0", "LOG_LEVEL": "WARNING"})
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def purchases_paid(fake: FakeStripe, count: int, prefix: str) -> list[Paid]:
    """`count` candidates, each with the welcome tokens and a purchase paid on the fake."""
    from accounts.models import User
    from ledger import services as ledger
    from payments import services
    from payments.packs import pack_get
    from payments.tests.fake_stripe import event

    packs = [pack_get(code) for code in PACK_CODES]
    paid: list[Paid] = []
    for index in range(count):
        pack = packs[index % len(packs)]
        assert pack is not None, "a default pack is missing: set TOKEN_PACKS as they were"
        # No password: hashing one costs half a second of CPU, and nobody logs in here.
        user = User.objects.create_user(email=f"{prefix}{index:04d}@example.com", password=None)
        account = ledger.account_open(user=user, welcome_tokens=WELCOME_TOKENS)
        purchase = services.checkout_start(user=user, pack=pack, base_url="http://127.0.0.1")
        assert purchase.checkout_session_id is not None
        session = fake.pay(purchase.checkout_session_id)
        paid.append(
            Paid(
                purchase_id=str(purchase.pk),
                account_id=account.pk,
                tokens=pack.tokens,
                event=event("checkout.session.completed", session),
            )
        )
    return paid


# --- delivering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    status: int  # 0: no HTTP answer, see `error`
    error: str  # "", "timeout" or the client's exception
    seconds: float
    replay: bool | None  # from the answer's JSON (None: no JSON)
    outcome: str

    @property
    def key(self) -> str:
        return str(self.status) if self.status else self.error


def delivery_of(answer: Response, seconds: float) -> Delivery:
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = {}
    replay = data.get("replay") if isinstance(data, dict) else None
    outcome = str(data.get("outcome") or data.get("error") or "") if isinstance(data, dict) else ""
    return Delivery(answer.status, "", seconds, replay, outcome)


async def deliver(conn: Connection, body: bytes, headers: dict[str, str]) -> Delivery:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            answer = await conn.request("POST", WEBHOOK, headers, body)
    except TimeoutError:
        conn.close()
        return Delivery(0, "timeout", time.perf_counter() - started, None, "")
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        conn.close()
        return Delivery(0, type(exc).__name__, time.perf_counter() - started, None, "")
    return delivery_of(answer, time.perf_counter() - started)


def statuses(deliveries: list[Delivery]) -> str:
    counts = Counter(d.key for d in deliveries)
    return ", ".join(f"{key}: {counts[key]}" for key in sorted(counts))


def cpu_seconds(pid: int | None) -> float | None:
    return tree_cpu(proc_table(), pid)


# --- 1. CPU per event ------------------------------------------------------------------------


@dataclass
class Batch:
    server_ms: float  # per event
    postgres_ms: float | None
    walls_ms: list[float]


@dataclass
class CpuRow:
    fresh: list[Batch] = field(default_factory=list)
    replays: list[Batch] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)  # every one, warm-up included
    problems: list[str] = field(default_factory=list)


async def batch_run(
    conn: Connection, server: Server, postmaster: int | None, paid: list[Paid], row: CpuRow
) -> Batch:
    signed = [item.delivery() for item in paid]  # signing is the client's work: not counted
    server_before, pg_before = cpu_seconds(server.pid), cpu_seconds(postmaster)
    walls: list[float] = []
    for body, headers in signed:
        done = await deliver(conn, body, headers)
        row.deliveries.append(done)
        walls.append(done.seconds * 1000)
    server_after, pg_after = cpu_seconds(server.pid), cpu_seconds(postmaster)
    if server_before is None or server_after is None:
        raise SetupError("the server's CPU cannot be read from /proc")
    pg_ms = None
    if pg_before is not None and pg_after is not None:
        pg_ms = (pg_after - pg_before) * 1000 / len(paid)
    return Batch((server_after - server_before) * 1000 / len(paid), pg_ms, walls)


async def cpu_row(server: Server, postmaster: int | None, paid: list[Paid]) -> CpuRow:
    row = CpuRow()
    conn = Connection(server.port)
    try:
        for item in paid[:WARMUP_EVENTS]:  # loads every code path of the worker: not counted
            body, headers = item.delivery()
            row.deliveries.append(await deliver(conn, body, headers))
        measured = paid[WARMUP_EVENTS:]
        for index in range(BATCHES):
            chunk = measured[index * BATCH : (index + 1) * BATCH]
            row.fresh.append(await batch_run(conn, server, postmaster, chunk, row))
        fresh_count = len(row.deliveries)
        for index in range(REPLAY_BATCHES):
            chunk = measured[index * BATCH : (index + 1) * BATCH]
            row.replays.append(await batch_run(conn, server, postmaster, chunk, row))
    finally:
        conn.close()
    bad = [d for d in row.deliveries if d.status != 200]
    if bad:
        row.problems.append(f"row 1: {len(bad)} answer(s) not 200 ({statuses(row.deliveries)})")
    granted = sum(1 for d in row.deliveries[:fresh_count] if d.replay is False)
    if granted != fresh_count:
        row.problems.append(f"row 1: {granted} of {fresh_count} new events processed as new")
    replayed = sum(1 for d in row.deliveries[fresh_count:] if d.replay is True)
    if replayed != len(row.deliveries) - fresh_count:
        row.problems.append("row 1: a replay was not answered as a replay")
    return row


# --- 2. concurrency ----------------------------------------------------------------------------


@dataclass
class ConcurrentRow:
    deliveries: list[Delivery]
    seconds: float
    server_cpu: float | None
    postgres_cpu: float | None
    grants: int = 0
    purchase_entries: int = 0
    balances_right: int = 0
    paid_status: int = 0
    events_processed: int = 0
    problems: list[str] = field(default_factory=list)


async def deliver_alone(port: int, body: bytes, headers: dict[str, str]) -> Delivery:
    conn = Connection(port)
    try:
        return await deliver(conn, body, headers)
    finally:
        conn.close()


async def concurrent_row(
    server: Server, postmaster: int | None, warmup: list[Paid], paid: list[Paid]
) -> ConcurrentRow:
    signed = [item.delivery() for item in warmup]
    warm = await asyncio.gather(*(deliver_alone(server.port, b, h) for b, h in signed))
    if any(d.status != 200 for d in warm):
        raise SetupError(f"the warm-up's deliveries failed: {statuses(list(warm))}")
    signed = [item.delivery() for item in paid]
    # Each event's copies side by side: the closest race there is between them.
    requests = [pair for pair in signed for _copy in range(DELIVERIES)]
    server_before, pg_before = cpu_seconds(server.pid), cpu_seconds(postmaster)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(WINDOW_TIMEOUT):
            deliveries = await asyncio.gather(
                *(deliver_alone(server.port, body, headers) for body, headers in requests)
            )
    except TimeoutError:
        raise SetupError(f"300 deliveries not answered within {WINDOW_TIMEOUT:g} s") from None
    seconds = time.perf_counter() - started
    server_after, pg_after = cpu_seconds(server.pid), cpu_seconds(postmaster)
    return ConcurrentRow(
        deliveries=list(deliveries),
        seconds=seconds,
        server_cpu=None
        if server_before is None or server_after is None
        else server_after - server_before,
        postgres_cpu=None if pg_before is None or pg_after is None else pg_after - pg_before,
    )


def concurrent_check(row: ConcurrentRow, paid: list[Paid], log_path: Path) -> None:
    """What the database says after the window; each failure a line of `row.problems`."""
    from ledger.models import LedgerEntry, TokenAccount
    from payments.models import PaymentEvent, Purchase

    ids = [item.purchase_id for item in paid]
    entries = LedgerEntry.objects.filter(purchase__in=ids)
    row.purchase_entries = entries.count()
    row.grants = entries.filter(kind=LedgerEntry.Kind.PURCHASE).count()
    balances = dict(
        TokenAccount.objects.filter(pk__in=[p.account_id for p in paid]).values_list(
            "pk", "balance"
        )
    )
    row.balances_right = sum(
        1 for p in paid if balances.get(p.account_id) == WELCOME_TOKENS + p.tokens
    )
    row.paid_status = Purchase.objects.filter(pk__in=ids, status=Purchase.Status.PAID).count()
    row.events_processed = PaymentEvent.objects.filter(
        pk__in=[p.event["id"] for p in paid], processed_at__isnull=False
    ).count()
    count = len(paid)
    not_ok = [d for d in row.deliveries if d.status != 200]
    new = sum(1 for d in row.deliveries if d.status == 200 and d.replay is False)
    checks = [
        (row.grants == count, f"{row.grants} grants for {count} purchases"),
        (row.purchase_entries == count, f"{row.purchase_entries} ledger entries name them"),
        (row.balances_right == count, f"{count - row.balances_right} balance(s) wrong"),
        (row.paid_status == count, f"{row.paid_status} of {count} purchases paid"),
        (row.events_processed == count, f"{row.events_processed} of {count} events processed"),
        (not not_ok, f"{len(not_ok)} answer(s) not 200 ({statuses(row.deliveries)})"),
        (new == count, f"{new} deliveries processed as new (one per event expected)"),
    ]
    row.problems.extend(f"row 2: {text}" for ok, text in checks if not ok)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if deadlocks := text.count("deadlock detected"):
        row.problems.append(f"row 2: {deadlocks} 'deadlock detected' in the server's log")


# --- report ----------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.1f} ms"


def spread(values: list[float]) -> str:
    return f"**{ms(statistics.median(values))}** ({min(values):.1f} to {max(values):.1f})"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def cpu_cell(batches: list[Batch]) -> str:
    server = [b.server_ms for b in batches]
    pg = [b.postgres_ms for b in batches if b.postgres_ms is not None]
    walls = [w for b in batches for w in b.walls_ms]
    text = f"server CPU {spread(server)} per event"
    if pg:
        median = statistics.median(pg)
        # Under one tick per batch reads as 0: say what that means.
        tick = 1000 / load.CLK_TCK / BATCH
        text += f"; PostgreSQL CPU {ms(median) if median else f'< {ms(tick)}'}"
    return text + f"; wall p50 {ms(statistics.median(walls))}, p95 {ms(percentile(walls, 0.95))}"


def table(cpu: CpuRow, concurrent: ConcurrentRow, verify_ok: bool, verify_text: str) -> str:
    p50 = statistics.median(b.server_ms for b in cpu.fresh)
    cpu_verdict = "met" if p50 <= CPU_GOAL_MS else "**not met**"
    events = BATCHES * BATCH
    count = len(concurrent.deliveries) // DELIVERIES
    latencies = [d.seconds * 1000 for d in concurrent.deliveries if d.status]
    replays = sum(1 for d in concurrent.deliveries if d.replay is True)
    parts = [
        f"grants **{concurrent.grants}**/{count}",
        f"balances right {concurrent.balances_right}/{count}",
        f"answers {statuses(concurrent.deliveries)} ({replays} replays)",
        f"`ledger_verify` **{'OK' if verify_ok else 'FAILED'}** ({verify_text[:80]})",
        f"all answered in **{concurrent.seconds:.2f} s** (latency p50 "
        f"{ms(statistics.median(latencies)) if latencies else '-'}, max "
        f"{ms(max(latencies)) if latencies else '-'})",
    ]
    requests = len(concurrent.deliveries)
    if concurrent.server_cpu is not None:
        cpu_text = f"server CPU {ms(concurrent.server_cpu * 1000 / requests)} per request"
        if concurrent.postgres_cpu is not None:
            cpu_text += f", PostgreSQL {ms(concurrent.postgres_cpu * 1000 / requests)}"
        parts.append(cpu_text)
    problems = cpu.problems + concurrent.problems
    if not verify_ok:
        problems.append("ledger_verify failed")
    concurrent_verdict = "met" if not concurrent.problems and verify_ok else "**FAILED**"
    return "\n".join(
        [
            "| what | goal | measured | |",
            "|---|---|---|---|",
            f"| webhook `checkout.session.completed` (verify, store, grant), 1 worker, "
            f"{events} distinct events in {BATCHES} batches, one after another | "
            f"<= {CPU_GOAL_MS:g} ms server CPU p50 | {cpu_cell(cpu.fresh)} | {cpu_verdict} |",
            f"| the same event again (a replay: verify, find it processed), "
            f"{REPLAY_BATCHES * BATCH} | (none) | {cpu_cell(cpu.replays)} | |",
            f"| {count} purchases paid at once, each event POSTed {DELIVERIES} times at once "
            f"({count * DELIVERIES} requests), 2 workers | {count} grants exactly, no deadlock, "
            f"no 500, `ledger_verify` OK | {'; '.join(parts)} | {concurrent_verdict} |",
        ]
    ) + ("\n\n" + "\n".join(f"- **Problem:** {p}" for p in problems) if problems else "")


def machine(admin: str, runtime: float) -> list[str]:
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Cores: {os.cpu_count()} ({cpu}); load average before the run: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Python {platform.python_version()}, PostgreSQL {row[0] if row else '?'}",
        f"- Packages: {load.package_versions()}",
        f"- Server: `{' '.join(serve_argv())}`",
        f"- Runtime: {runtime:.0f} s",
    ]


# --- main ------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql", "pgsql", "postgis"):
        log("DATABASE_URL must point at PostgreSQL: run through .ci/with-postgres")
        return 2
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)
    admin = libpq_url(url)
    load.BENCH_DB = BENCH_DB  # recreate_database's
    env = server_env(database_url(url, BENCH_DB))
    procs = Processes()
    fake: FakeStripe | None = None
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    try:
        log(f"creating the database {BENCH_DB!r}; migrate, collectstatic")
        load.recreate_database(admin)
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"]):
            done = manage(command, env)
            if done.returncode != 0:
                raise SetupError(f"manage.py {command[0]}: {(done.stdout + done.stderr)[-2000:]}")
        django_setup(env)
        from django.conf import settings
        from django.db import connections

        from payments.tests import fake_stripe

        fake = fake_stripe.FakeStripe().start()
        # The server reads it from its environment; this process, whose settings are loaded.
        env["STRIPE_API_BASE"] = settings.STRIPE_API_BASE = fake.base_url
        postmaster = find_postmaster(admin)
        sizes = (WARMUP_EVENTS + BATCHES * BATCH, CONCURRENT_WARMUP, CANDIDATES)
        log(f"{sum(sizes)} candidates, their purchases paid on the fake Stripe")
        cpu_paid = purchases_paid(fake, sizes[0], "cpu")
        warm_paid = purchases_paid(fake, sizes[1], "warm")
        paid = purchases_paid(fake, sizes[2], "at-once")
        connections.close_all()

        log("1/2 CPU per event, one worker")
        server = asyncio.run(server_start(procs, env, workers=1))
        logs = [server.log_path]
        cpu = asyncio.run(cpu_row(server, postmaster, cpu_paid))
        procs.stop(server.pid)

        log(f"2/2 {CANDIDATES} events x {DELIVERIES} at once, two workers")
        server = asyncio.run(server_start(procs, env, workers=2))
        logs.append(server.log_path)
        concurrent = asyncio.run(concurrent_row(server, postmaster, warm_paid, paid))
        log(f"  {statuses(concurrent.deliveries)} in {concurrent.seconds:.2f} s")
        procs.stop(server.pid)
        concurrent_check(concurrent, paid, server.log_path)
        connections.close_all()
        verify = manage(["ledger_verify"], env)
        verify_text = " ".join((verify.stdout + verify.stderr).split())
        notes = [
            f"{path.relative_to(ROOT)}: " + "; ".join(found)
            for path in logs
            if (found := scan_log(path).notes())
        ]
        info = machine(admin, time.perf_counter() - started)
    except KeyboardInterrupt:
        log("interrupted: stopping every process started")
        return 130
    except SetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        procs.stop_all()
        if fake is not None:
            fake.stop()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        with contextlib.suppress(psycopg.Error):
            load.recreate_database(admin, create=False)
    report = table(cpu, concurrent, verify.returncode == 0, verify_text)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Stripe's webhook: CPU per event, and deliveries at once\n\n"
        + report
        + "\n\n## Server log\n\n"
        + ("\n".join(f"- {note}" for note in notes) or "- nothing unusual")
        + "\n\n## Machine\n\n"
        + "\n".join(info)
        + "\n",
        encoding="utf-8",
    )
    log(f"wrote {RESULTS.relative_to(ROOT)}")
    failed = cpu.problems or concurrent.problems or verify.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
