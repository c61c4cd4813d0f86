"""Mockroom's SQL harness. Runs INSIDE the sandbox, on its /usr/bin/python3: standard library only,
nothing newer than Python 3.11 (the protocol: interviews/execution/harness/__init__.py).

The candidate's answer is ONE SELECT statement (WITH ... SELECT too; a trailing `;` allowed). Per
case: a fresh in-memory SQLite database, the problem's schema, the case's setup, then the answer,
read-only (an authorizer allows reading and nothing else), stopped by a progress handler when it
runs past the time limit. Rows come back as lists.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import sys
import time
from typing import Any

# What the answer may do: read tables, call functions, recurse (WITH RECURSIVE). Nothing else:
# no writes, no PRAGMA, no ATTACH (which would open files), no transactions.
ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, 33}  # RECURSIVE
QUERY_KEYWORDS = ("SELECT", "WITH")
LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)


class Stop(Exception):
    """A limit was hit: report this case with it, then stop."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class Protocol:
    """The JSON-lines stream to the app, on the original stdout (see python_runner.py)."""

    def __init__(self, budget: int) -> None:
        self.fd = os.dup(1)
        os.dup2(2, 1)
        self.budget = budget
        self.sent = 0
        self.dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode

    def send(self, message: dict[str, Any]) -> None:
        data = (self.dumps(message) + "\n").encode()
        self.sent += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    @property
    def room(self) -> int:
        return self.budget - self.sent - 512


def authorize(action: int, *args: object) -> int:
    return sqlite3.SQLITE_OK if action in ALLOWED else sqlite3.SQLITE_DENY


def first_keyword(query: str) -> str:
    rest = query[LEADING_COMMENTS.match(query).end() :]  # type: ignore[union-attr]
    match = re.match(r"[A-Za-z]+", rest)
    return match.group(0).upper() if match else ""


def line_of(message: str, query: str) -> int | None:
    """SQLite says `near "FORM": syntax error`, not where: the line where that token first is."""
    near = re.search(r'near "(.+?)": syntax error', message)
    if near is None:
        return (len(query.rstrip().splitlines()) or 1) if "incomplete input" in message else None
    position = query.find(near.group(1))
    return query.count("\n", 0, position) + 1 if position >= 0 else None


def describe(error: BaseException, query: str) -> str:
    message = str(error)
    if "not authorized" in message:
        return "Only reading is allowed: the answer must be one SELECT statement"
    if "one statement at a time" in message:
        return "The answer must be exactly one SELECT statement (a single trailing ; is fine)"
    return message[:1000]


def database(schema: str, setup: str, memory_mb: int) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute(f"PRAGMA hard_heap_limit = {memory_mb * 1024 * 1024}")
    connection.execute("PRAGMA trusted_schema = OFF")
    connection.executescript(schema)
    connection.executescript(setup)
    return connection


def guard(connection: sqlite3.Connection, deadline: float) -> None:
    """From here on the connection only reads, and stops at the deadline."""
    connection.set_authorizer(authorize)
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)


def cell(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        raise Stop("", f"the result holds {value!r}, which is not a JSON number")
    if isinstance(value, bytes):
        raise Stop("", "the result holds a BLOB: select hex(column) or a text value instead")
    return value


def rows_fetch(cursor: sqlite3.Cursor, room: int) -> list[list[object]]:
    rows: list[list[object]] = []
    size = 0
    while batch := cursor.fetchmany(500):
        for row in batch:
            values = [cell(value) for value in row]
            size += len(repr(values)) + 1
            if size > room:
                raise Stop("output", f"Output limit exceeded: more than {room} bytes of rows")
            rows.append(values)
    return rows


def main() -> int:
    request = json.loads(sys.stdin.buffer.read().decode())
    limits = request.get("limits") or {}
    protocol = Protocol(int(limits.get("output_bytes", 1 << 20)))
    memory_mb = int(limits.get("memory_mb", 128))
    deadline = time.monotonic() + float(limits.get("cpu_seconds", 2.0))
    query: str = request["code"]
    schema: str = request.get("schema") or ""

    keyword = first_keyword(query)
    if keyword not in QUERY_KEYWORDS:
        found = f"it starts with {keyword}" if keyword else "it is empty"
        error = f"The answer must be one SELECT statement (WITH ... SELECT is fine): {found}"
        protocol.send({"compiled": False, "error": error, "line": None})
        return 0
    try:
        # EXPLAIN prepares the answer against the schema without running it: syntax errors,
        # unknown tables and columns, several statements and any writing are caught here.
        connection = database(schema, "", memory_mb)
        guard(connection, deadline)
        connection.execute("EXPLAIN " + query).fetchall()
        connection.close()
    except sqlite3.Error as error:
        line = line_of(str(error), query)
        protocol.send({"compiled": False, "error": describe(error, query), "line": line})
        return 0
    protocol.send({"compiled": True})

    for index, case in enumerate(request["cases"]):
        result: dict[str, Any] = {"case": index, "stdout": ""}
        started = time.perf_counter()
        try:
            try:
                connection = database(schema, case.get("setup") or "", memory_mb)
            except sqlite3.Error as error:  # the problem's data, not the candidate's answer
                raise Stop("", f"The test's setup failed: {error}") from None
            guard(connection, deadline)
            cursor = connection.execute(query)
            result["value"] = rows_fetch(cursor, protocol.room)
            result["ok"] = True
            connection.close()
        except Stop as stop:
            result.update(ok=False, error=str(stop))
            if stop.limit:
                result["limit"] = stop.limit
        except MemoryError:
            result.update(ok=False, error="Out of memory: the memory limit", limit="memory")
        except sqlite3.OperationalError as error:
            if str(error) == "interrupted":
                message = "Interrupted: the query ran longer than the time limit"
                result.update(ok=False, error=message, limit="time")
            else:
                result.update(ok=False, error=describe(error, query))
        except sqlite3.Error as error:
            result.update(ok=False, error=describe(error, query))
        result["ms"] = round((time.perf_counter() - started) * 1000, 3)
        protocol.send(result)
        if "limit" in result:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
