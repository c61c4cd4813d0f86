"""Helpers the tests of every app import (`from config.testing import run_concurrently`).

Fixtures live in the root conftest.py; plain functions live here, importable like any module.
"""

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections

# The atomic blocks the test case itself opened (pytest-django wraps a `db` test in a transaction
# and a savepoint), in the thread that runs the test: recorded as each test starts (conftest.py).
_test_case_atomics = threading.local()


def run_concurrently[T](fn: Callable[[int], T], count: int) -> list[T | BaseException]:
    """Run fn(0..count-1) in `count` threads released together; collect results or exceptions.

    Each thread closes its own database connection, as Django's select_for_update tests do.
    """
    barrier = threading.Barrier(count)

    def worker(index: int) -> T | BaseException:
        try:
            barrier.wait(timeout=30)
            return fn(index)
        except BaseException as exc:  # collected for the test to inspect
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def atomic_baseline_record() -> None:
    """Remember how many atomic blocks are open as the test body starts: the test case's own."""
    _test_case_atomics.depth = len(connection.atomic_blocks)


def assert_no_transaction_open() -> None:
    """What a fake generator calls: the LLM must never run inside a database transaction.

    Only blocks opened after the test started count, so a `db` test's wrapping transaction does
    not; another thread's connection starts with none.
    """
    open_blocks = len(connection.atomic_blocks) - getattr(_test_case_atomics, "depth", 0)
    assert open_blocks <= 0, "a database transaction is open during generation"


def question_bank_copy() -> Callable[..., None]:
    """Copy the topics and questions that migrate loaded into the test database; return a
    post_migrate receiver that puts the copy back in two bulk inserts after a flush."""
    from interviews.models import Question, Topic

    topics = list(Topic.objects.all())
    questions = list(Question.objects.all())

    def restore(sender: object, *, using: str, **kwargs: object) -> None:
        # Rows already there are kept, as the bank's own loader keeps them.
        Topic.objects.using(using).bulk_create(topics, ignore_conflicts=True)
        Question.objects.using(using).bulk_create(questions, ignore_conflicts=True)

    return restore


def balance(user: Any) -> int:
    """The user's stored balance, read again from the database."""
    user.token_account.refresh_from_db()
    return int(user.token_account.balance)


def badge(html: str) -> int:
    """The balance the badge in a response shows (the page's, or the out-of-band one)."""
    match = re.search(r'id="token-balance"[^>]*>(\d+) tokens?<', html)
    assert match, "no balance badge in the response"
    return int(match.group(1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """REDIS_URL when set; else a throwaway redis-server on loopback, stopped afterwards."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no REDIS_URL and no redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        command = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None, "redis-server exited"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)
