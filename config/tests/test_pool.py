"""The pool's health check (config.pool): once a second per connection, not once a checkout."""

import psycopg
import pytest
from django.conf import settings

from config import pool


class Connection:
    """What the check uses of a psycopg connection: autocommit and execute."""

    def __init__(self, *, broken: bool = False) -> None:
        self.autocommit = True
        self.broken = broken
        self.checks = 0

    def execute(self, query: str) -> None:
        self.checks += 1
        if self.broken:
            raise psycopg.OperationalError("server closed the connection unexpectedly")


def test_the_settings_give_the_pool_this_check():
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["check"] is pool.check_connection


def test_a_connection_is_checked_at_most_once_a_second(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(pool.time, "monotonic", lambda: clock[0])
    conn = Connection()
    pool.check_connection(conn)
    pool.check_connection(conn)
    clock[0] += pool.CHECK_INTERVAL_SECONDS / 2
    pool.check_connection(conn)
    assert conn.checks == 1
    clock[0] += pool.CHECK_INTERVAL_SECONDS
    pool.check_connection(conn)
    assert conn.checks == 2


def test_a_connection_that_fails_its_check_is_refused_every_time(monkeypatch):
    conn = Connection(broken=True)
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError):
            pool.check_connection(conn)
    assert conn.checks == 2
