"""The database pool's health check, at most once a second per connection.

With CONN_HEALTH_CHECKS, Django asks the pool to check each connection it hands out with an
empty query: a round trip every time a request takes a connection, and a question's steps
take one two or three times (each gives it back before waiting on the model). Django's own
rule for persistent connections is one check per request; this keeps that rule's cost:
a connection is checked when it has not been for CHECK_INTERVAL_SECONDS. A connection that
died within that second fails its first statement instead, and the request answers 503 "not
charged" (the pool then drops the connection), as it would if the database failed mid-request.
"""

from __future__ import annotations

import math
import time
from typing import Any

from psycopg_pool import ConnectionPool

CHECK_INTERVAL_SECONDS = 1.0
_CHECKED_AT = "_mockroom_checked_at"


def check_connection(conn: Any) -> None:
    """psycopg_pool's check (ConnectionPool.check_connection), skipped for a connection that
    passed it less than CHECK_INTERVAL_SECONDS ago."""
    now = time.monotonic()
    if now - getattr(conn, _CHECKED_AT, -math.inf) < CHECK_INTERVAL_SECONDS:
        return
    ConnectionPool.check_connection(conn)
    setattr(conn, _CHECKED_AT, now)
