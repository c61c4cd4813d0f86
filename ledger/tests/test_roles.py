"""The split PostgreSQL roles (README, "Database roles"): even the app's own credentials cannot
edit or erase ledger history, nor switch off the trigger that protects it.

These tests build what production runs, in the test cluster: a database of its own owned by a
migration role (not a superuser) that migrates it as `make migrate` does, and a runtime role
granted by `grant_runtime_role`. Everything the app does then runs as the runtime role, in
processes of its own (`manage.py` with that role's DATABASE_URL), and the refusals are checked
over a plain psycopg connection as that role.
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import errors, sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[2]
WELCOME_TOKENS = 10
APP_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@dataclass(frozen=True)
class Cluster:
    """The test cluster's server, a database owned by `owner`, and the app's `runtime` role."""

    host: str
    port: str
    superuser: str
    database: str
    owner: str
    runtime: str
    member: str  # a role that belongs to the owner: it must be refused as a runtime role

    def url(self, *, user: str) -> str:
        return f"postgres://{user}@{self.host}:{self.port}/{self.database}"

    def connect(self, *, user: str, database: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=database or self.database,
            user=user,
            autocommit=True,
            connect_timeout=10,
        )

    def manage(
        self, *args: str, user: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        """`manage.py ARGS` in a process of its own, connected as `user` (the way a person, the
        release step or an app server runs it)."""
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={
                **os.environ,
                "SECRET_KEY": settings.SECRET_KEY,
                "DATABASE_URL": self.url(user=user),
                "DB_POOL_MAX_SIZE": "2",
                "QUESTION_SOURCE": "bank",
                "OPENAI_API_KEY": "",
                "WELCOME_TOKENS": str(WELCOME_TOKENS),
                "DATABASE_RUNTIME_ROLE": "",
                "LOG_LEVEL": "WARNING",
                **(env or {}),
            },
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Roles and a database made for this module (roles are cluster-wide: unique names), migrated
    by the migration role; the runtime role granted; then one more migration (the sessions app,
    unapplied before the grants) creates a table after them. Everything is dropped at the end."""
    db = settings.DATABASES["default"]
    suffix = uuid.uuid4().hex[:10]
    cluster = Cluster(
        host=db["HOST"] or "127.0.0.1",
        port=str(db["PORT"] or 5432),
        superuser=db["USER"],
        database=f"mockroom_roles_{suffix}",
        owner=f"mockroom_owner_{suffix}",
        runtime=f"mockroom_app_{suffix}",
        member=f"mockroom_member_{suffix}",
    )
    admin = cluster.connect(user=cluster.superuser, database="postgres")
    row = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not (row and row[0]):
        admin.close()
        pytest.skip("creating roles and databases needs the test cluster's superuser")
    try:
        for role in (cluster.owner, cluster.runtime, cluster.member):
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        admin.execute(
            sql.SQL("GRANT {} TO {}").format(
                sql.Identifier(cluster.owner), sql.Identifier(cluster.member)
            )
        )
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(cluster.database), sql.Identifier(cluster.owner)
            )
        )
        owner = cluster.owner
        succeeded(cluster.manage("migrate", "--noinput", "-v0", user=owner))
        succeeded(cluster.manage("migrate", "sessions", "zero", "--noinput", "-v0", user=owner))
        succeeded(cluster.manage("grant_runtime_role", cluster.runtime, user=owner))
        succeeded(cluster.manage("migrate", "--noinput", "-v0", user=owner))  # the later one
        yield cluster
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(cluster.database)
            )
        )
        for role in (cluster.member, cluster.runtime, cluster.owner):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()


# What an app server does, as the runtime role: sign up (auth, token account, the welcome grant),
# buy two questions with the real two-phase charge (reserve, bank, capture), replay one, fail one
# (reserve, release), log in (a session row), delete a user; then reconcile the ledger.
APP_SCRIPT = """
import json
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from accounts.services import user_signup
from interviews.models import Topic
from interviews.services import question_next, session_end, session_start
from ledger.selectors import account_balance_get, account_problem_list
from ledger.services import account_get_or_open, hold_release, hold_reserve

user = user_signup(email="runtime@example.com", password="correct horse 9")
session = session_start(user=user, topic=Topic.objects.order_by("pk").first())
bought = [question_next(session=session, request_id=f"q{n}") for n in range(2)]
replay = question_next(session=session, request_id="q0")
failed = hold_reserve(
    account=account_get_or_open(user=user), request_id="f1", purpose="question:x", actor=user
)
hold_release(hold=failed.hold, note="the model failed")
session_end(session=session)
Client().force_login(user)
user_signup(email="leaving@example.com", password="correct horse 9").delete()
with connection.cursor() as cursor:
    cursor.execute("SELECT current_user")
    role = cursor.fetchone()[0]
print(json.dumps({
    "role": role,
    "bought": [[b.served.pk, b.replay] for b in bought],
    "replay": [replay.served.pk, replay.replay],
    "balance": account_balance_get(user=user),
    "sessions": Session.objects.count(),
    "problems": [str(problem) for problem in account_problem_list()],
}))
"""


@pytest.fixture(scope="module")
def app_run(cluster: Cluster) -> dict:
    result = succeeded(cluster.manage("shell", "-c", APP_SCRIPT, user=cluster.runtime))
    return json.loads(result.stdout.strip().splitlines()[-1])


def privileges(conn: psycopg.Connection, *, role: str, table: str) -> set[str]:
    return {
        privilege
        for privilege in TABLE_PRIVILEGES
        if conn.execute(
            "SELECT has_table_privilege(%s, %s::regclass, %s)", [role, table, privilege]
        ).fetchone()[0]  # type: ignore[index]  # one row
    }


def an_entry(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT min(id) FROM ledger_ledgerentry").fetchone()
    assert row, "no ledger entry"
    return row[0]


# --- the app works as the runtime role ------------------------------------------------------


def test_the_app_buys_questions_as_the_runtime_role_and_the_ledger_reconciles(cluster, app_run):
    assert app_run["role"] == cluster.runtime
    first, second = app_run["bought"]
    assert first[1] is second[1] is False
    assert app_run["replay"] == [first[0], True]
    assert app_run["balance"] == WELCOME_TOKENS - 2
    assert app_run["sessions"] == 1
    assert app_run["problems"] == []


def test_the_runtime_role_can_run_the_servers_migration_check(cluster):
    """`make serve` refuses to start on an unmigrated database: it reads the migration record."""
    succeeded(cluster.manage("migrate", "--check", user=cluster.runtime))


def test_the_runtime_role_reads_and_appends_ledger_entries(cluster, app_run):
    with cluster.connect(user=cluster.runtime) as conn:
        conn.row_factory = dict_row
        rows = conn.execute("SELECT * FROM ledger_ledgerentry ORDER BY id").fetchall()
        assert len(rows) >= 7  # two grants, hold + debit twice, hold + release
        grant = next(row for row in rows if row["kind"] == "grant")
        new = {**grant, "version": grant["version"] + 1000, "reason": "appended by the app"}
        del new["id"]
        insert = sql.SQL("INSERT INTO ledger_ledgerentry ({}) VALUES ({}) RETURNING id").format(
            sql.SQL(", ").join(map(sql.Identifier, new)),
            sql.SQL(", ").join(sql.Placeholder() * len(new)),
        )
        with conn.transaction(force_rollback=True):  # an entry of its own, then undone
            assert conn.execute(insert, list(new.values())).fetchone()["id"] > grant["id"]


# --- what the runtime role cannot do --------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_ledgerentry SET balance_delta = 1000 WHERE id = %s",
        "DELETE FROM ledger_ledgerentry WHERE id = %s",
    ],
)
def test_update_and_delete_are_refused_by_privilege_before_the_trigger(cluster, app_run, statement):
    with cluster.connect(user=cluster.runtime) as conn:
        entry = an_entry(conn)
        before = conn.execute("SELECT * FROM ledger_ledgerentry WHERE id = %s", [entry]).fetchone()
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for table"):
            conn.execute(statement, [entry])
        after = conn.execute("SELECT * FROM ledger_ledgerentry WHERE id = %s", [entry]).fetchone()
        assert after == before
    # The owner has the privilege: it is the trigger that stops it.
    with (
        cluster.connect(user=cluster.owner) as conn,
        pytest.raises(errors.RestrictViolation, match="append-only"),
    ):
        conn.execute(statement, [entry])


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE ledger_ledgerentry",
        "TRUNCATE ledger_ledgerentry CASCADE",
        "ALTER TABLE ledger_ledgerentry DISABLE TRIGGER ALL",
        "ALTER TABLE ledger_ledgerentry DISABLE TRIGGER ledger_entry_append_only",
        "DROP TRIGGER ledger_entry_append_only ON ledger_ledgerentry",
        "DROP TABLE ledger_ledgerentry CASCADE",
        "ALTER TABLE ledger_ledgerentry OWNER TO CURRENT_USER",
        "CREATE OR REPLACE FUNCTION ledger_entry_refuse_change() RETURNS trigger AS "
        "$$ BEGIN RETURN NEW; END; $$ LANGUAGE plpgsql",
        "DROP FUNCTION ledger_entry_refuse_change() CASCADE",
        "SET ROLE {owner}",
    ],
)
def test_the_runtime_role_cannot_erase_history_or_switch_the_trigger_off(
    cluster, app_run, statement
):
    with cluster.connect(user=cluster.runtime) as conn:
        count = conn.execute("SELECT count(*) FROM ledger_ledgerentry").fetchone()[0]
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement.replace("{owner}", cluster.owner))
        assert conn.execute("SELECT count(*) FROM ledger_ledgerentry").fetchone()[0] == count
        enabled = conn.execute(
            "SELECT tgenabled FROM pg_trigger WHERE tgname = 'ledger_entry_append_only'"
        ).fetchone()
        assert enabled == ("O",)  # still there, firing on every change


def test_the_runtime_role_has_exactly_what_the_app_needs(cluster):
    with cluster.connect(user=cluster.owner) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind = 'r' "
                "AND relnamespace = 'public'::regnamespace ORDER BY relname"
            )
        ]
        granted = {table: privileges(conn, role=cluster.runtime, table=table) for table in tables}
        sequences = conn.execute(
            "SELECT relname, has_sequence_privilege(%s, oid, 'USAGE'), "
            "has_sequence_privilege(%s, oid, 'UPDATE') FROM pg_class "
            "WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace",
            [cluster.runtime, cluster.runtime],
        ).fetchall()
    assert granted.pop("ledger_ledgerentry") == {"SELECT", "INSERT"}
    assert granted.pop("django_migrations") == {"SELECT"}
    assert {"django_session", "django_content_type", "auth_permission"} <= set(granted)
    assert {"accounts_user", "ledger_tokenaccount", "ledger_hold"} <= set(granted)
    assert granted == dict.fromkeys(granted, APP_PRIVILEGES)
    assert sequences
    assert all(usage and not setval for _, usage, setval in sequences)


def test_a_table_a_later_migration_creates_is_the_runtime_roles_to_use(cluster, app_run):
    """django_session was created after the grants (its migration was unapplied, then applied
    again by the migration role): default privileges granted it. So for any table the migration
    role creates from now on."""
    with cluster.connect(user=cluster.owner) as conn:
        conn.execute(
            "CREATE TABLE later_feature "
            "(id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text NOT NULL)"
        )
    with cluster.connect(user=cluster.runtime) as conn:
        assert conn.execute("SELECT count(*) FROM django_session").fetchone() == (1,)
        key = "-" * 32  # not a key Django makes (those are [a-z0-9])
        conn.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date) "
            "VALUES (%s, '', now())",
            [key],
        )
        conn.execute("UPDATE django_session SET session_data = 'x' WHERE session_key = %s", [key])
        deleted = conn.execute("DELETE FROM django_session WHERE session_key = %s", [key])
        assert deleted.rowcount == 1
        new_id = conn.execute(
            "INSERT INTO later_feature (note) VALUES ('new') RETURNING id"
        ).fetchone()[0]
        conn.execute("UPDATE later_feature SET note = 'changed' WHERE id = %s", [new_id])
        assert conn.execute("SELECT note FROM later_feature").fetchall() == [("changed",)]
        conn.execute("DELETE FROM later_feature")


# --- the command ----------------------------------------------------------------------------


def test_the_command_is_idempotent_and_takes_back_extra_privileges(cluster):
    with cluster.connect(user=cluster.owner) as conn:
        conn.execute(
            sql.SQL("GRANT ALL ON ledger_ledgerentry TO {}").format(sql.Identifier(cluster.runtime))
        )
        assert "TRUNCATE" in privileges(conn, role=cluster.runtime, table="ledger_ledgerentry")
        first = succeeded(cluster.manage("grant_runtime_role", cluster.runtime, user=cluster.owner))
        again = succeeded(cluster.manage("grant_runtime_role", cluster.runtime, user=cluster.owner))
        assert first.stdout == again.stdout
        assert "SELECT, INSERT only on ledger_ledgerentry" in first.stdout
        assert privileges(conn, role=cluster.runtime, table="ledger_ledgerentry") == {
            "SELECT",
            "INSERT",
        }


def test_make_migrate_grants_the_role_named_in_the_environment(cluster):
    """`make migrate` runs `grant_runtime_role --if-configured`: DATABASE_RUNTIME_ROLE names the
    role (from the environment or .env); unset, it does nothing."""
    result = cluster.manage(
        "grant_runtime_role",
        "--if-configured",
        user=cluster.owner,
        env={"DATABASE_RUNTIME_ROLE": cluster.runtime},
    )
    assert f"Granted {cluster.runtime}:" in succeeded(result).stdout
    quiet = succeeded(cluster.manage("grant_runtime_role", "--if-configured", user=cluster.owner))
    assert quiet.stdout == quiet.stderr == ""


@pytest.mark.parametrize(
    ("user", "role", "message"),
    [
        ("runtime", "runtime", "Run this as the migration role"),
        ("owner", "owner", "owns the app's tables"),
        ("owner", "member", "is a member of the migration role"),
        ("owner", "superuser", "is a superuser"),
        ("owner", "nobody", "No PostgreSQL role named 'nobody'"),
    ],
)
def test_the_command_refuses_a_role_that_would_keep_the_power_to_rewrite(
    cluster, user, role, message
):
    names = {"nobody": "nobody", **vars(cluster)}
    result = cluster.manage("grant_runtime_role", names[role], user=names[user])
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_command_refuses_sqlite(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "grant_runtime_role", "mockroom_app"],
        cwd=ROOT,
        env={
            **os.environ,
            "SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Database roles need PostgreSQL; this database is sqlite" in result.stderr


@pytest.mark.django_db
def test_the_command_needs_a_role(monkeypatch):
    monkeypatch.delenv("DATABASE_RUNTIME_ROLE", raising=False)
    with pytest.raises(CommandError, match="Give the runtime role"):
        call_command("grant_runtime_role")
    call_command("grant_runtime_role", "--if-configured")  # nothing to do: no error


@pytest.mark.django_db
def test_the_command_refuses_a_role_that_does_not_exist():
    with pytest.raises(CommandError, match="No PostgreSQL role named 'no_such_role'"):
        call_command("grant_runtime_role", "no_such_role")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'no_such_role'")
        assert cursor.fetchone() == (0,)
