"""Database connections under a pool: code that is about to wait (on the model, on a slow
client) gives its connection back first, so that waiting costs no connection."""

from django.db import connection


def connection_hand_back() -> None:
    """Return this thread's connection to the pool. Without a pool (SQLite, DB_POOL_MAX_SIZE=0)
    the connection belongs to the thread and stays; inside a transaction (a test's) it stays."""
    if getattr(connection, "pool", None) and not connection.in_atomic_block:
        connection.close()  # with a pool: back to it
