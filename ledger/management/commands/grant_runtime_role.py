"""Give the app servers' PostgreSQL role what the app needs, and no way to rewrite ledger history.

Production runs with two roles (README, "Database roles"): the migration role owns the schema and
runs `make migrate`; the runtime role is what the app servers connect as. A role that owns a
table can disable its triggers, drop it or grant itself anything, so the append-only trigger of
ledger entries only protects history from a role that does not own the table and holds no UPDATE,
DELETE or TRUNCATE on it. This command, run by the migration role after `migrate`, sets exactly
that up, from scratch each time (it is idempotent):

- every table of the installed apps (Django's own too): SELECT, INSERT, UPDATE, DELETE;
- ledger_ledgerentry: SELECT and INSERT only;
- django_migrations: SELECT only (`migrate --check` before `make serve` reads it);
- USAGE on those tables' sequences;
- default privileges, so that tables and sequences a later migration creates are granted to the
  runtime role as they appear (re-running the command re-applies the ledger restriction, which is
  what `make migrate` does when DATABASE_RUNTIME_ROLE is set).
"""

import os
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.migrations.recorder import MigrationRecorder

from ledger.models import LedgerEntry

ROLE_VARIABLE = "DATABASE_RUNTIME_ROLE"
LEDGER_TABLE = LedgerEntry._meta.db_table
MIGRATIONS_TABLE = MigrationRecorder.Migration._meta.db_table
APP_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
LEDGER_PRIVILEGES = "SELECT, INSERT"
# What would let the runtime role change or erase history; checked after granting, so that a
# privilege reaching it some other way (PUBLIC, a role it belongs to) is refused too.
LEDGER_FORBIDDEN = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")


def _ident(name: str) -> str:
    """A PostgreSQL identifier, quoted (role names come from the command line)."""
    return '"' + name.replace('"', '""') + '"'


def _idents(names: list[str]) -> str:
    return ", ".join(_ident(name) for name in names)


@dataclass(frozen=True)
class Grants:
    owner: str
    schema: str
    app_tables: list[str]
    sequences: list[str]


def _app_tables(*, cursor: CursorWrapper) -> list[str]:
    """The installed apps' tables that exist (from introspection, so a new app is included), and
    Django's migration record."""
    existing = set(connection.introspection.table_names(cursor))
    tables = set(connection.introspection.django_table_names(only_existing=True))
    return sorted(tables | ({MIGRATIONS_TABLE} & existing))


def _owner_of(*, cursor: CursorWrapper, tables: list[str]) -> str:
    """The one role that owns every app table: the migration role."""
    cursor.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid) "
        "AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        [tables],
    )
    owners: dict[str, list[str]] = {}
    for table, owner in cursor.fetchall():
        owners.setdefault(owner, []).append(table)
    if len(owners) != 1:
        listed = "; ".join(f"{owner}: {', '.join(sorted(t))}" for owner, t in owners.items())
        raise CommandError(
            f"The app's tables must all belong to the migration role, but they are owned by "
            f"{len(owners)} roles ({listed})."
        )
    return next(iter(owners))


def _check_roles(*, cursor: CursorWrapper, role: str, owner: str) -> None:
    """Refuse a runtime role that would keep the powers this command is meant to withhold."""
    cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role])
    row = cursor.fetchone()
    if row is None:
        raise CommandError(
            f"No PostgreSQL role named {role!r}: create it first "
            f"(CREATE ROLE {_ident(role)} LOGIN PASSWORD '...')."
        )
    if row[0]:
        raise CommandError(
            f"{role!r} is a superuser: no privilege can be withheld from it. "
            f"The runtime role must be an ordinary role."
        )
    if role == owner:
        raise CommandError(
            f"{role!r} owns the app's tables (it is the migration role): the runtime role must "
            f"be another role."
        )
    cursor.execute(
        "SELECT current_user, pg_has_role(current_user, %s, 'USAGE'), "
        "pg_has_role(%s, %s, 'MEMBER')",
        [owner, role, owner],
    )
    current, can_act_as_owner, role_is_member = cursor.fetchone()
    if not can_act_as_owner:
        raise CommandError(
            f"Run this as the migration role {owner!r}, the owner of the app's tables "
            f"(connected as {current!r})."
        )
    if role_is_member:
        raise CommandError(
            f"{role!r} is a member of the migration role {owner!r} and so has its owner's "
            f"rights (it could disable the ledger's trigger): revoke that membership first."
        )
    cursor.execute("SELECT has_schema_privilege(%s, current_schema(), 'USAGE')", [role])
    if not cursor.fetchone()[0]:
        raise CommandError(
            f"{role!r} cannot use the app's schema: GRANT USAGE ON SCHEMA <schema> TO "
            f"{_ident(role)} first."
        )


def _sequences(*, cursor: CursorWrapper, tables: list[str]) -> list[str]:
    names = {
        sequence["name"]
        for table in tables
        for sequence in connection.introspection.get_sequences(cursor, table)
    }
    return sorted(names)


def _has_table_privilege(*, cursor: CursorWrapper, role: str, table: str, what: str) -> bool:
    cursor.execute("SELECT has_table_privilege(%s, %s::regclass, %s)", [role, _ident(table), what])
    return bool(cursor.fetchone()[0])


def grants_apply(*, role: str) -> Grants:
    """Set the runtime role's privileges from scratch, in one transaction: all or nothing."""
    with transaction.atomic(), connection.cursor() as cursor:
        tables = _app_tables(cursor=cursor)
        if LEDGER_TABLE not in tables:
            raise CommandError(
                f"The table {LEDGER_TABLE} does not exist yet: run `make migrate` first."
            )
        owner = _owner_of(cursor=cursor, tables=tables)
        _check_roles(cursor=cursor, role=role, owner=owner)
        cursor.execute("SELECT current_schema()")
        schema = cursor.fetchone()[0]
        sequences = _sequences(cursor=cursor, tables=tables)
        app_tables = [t for t in tables if t not in (LEDGER_TABLE, MIGRATIONS_TABLE)]
        grantee, owner_ident, schema_ident = _ident(role), _ident(owner), _ident(schema)
        statements = [
            f"REVOKE ALL ON TABLE {_idents(tables)} FROM {grantee}",
            f"GRANT {APP_PRIVILEGES} ON TABLE {_idents(app_tables)} TO {grantee}",
            f"GRANT {LEDGER_PRIVILEGES} ON TABLE {_ident(LEDGER_TABLE)} TO {grantee}",
            f"GRANT SELECT ON TABLE {_ident(MIGRATIONS_TABLE)} TO {grantee}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_ident} IN SCHEMA {schema_ident} "
            f"GRANT {APP_PRIVILEGES} ON TABLES TO {grantee}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner_ident} IN SCHEMA {schema_ident} "
            f"GRANT USAGE ON SEQUENCES TO {grantee}",
        ]
        if sequences:
            statements += [
                f"REVOKE ALL ON SEQUENCE {_idents(sequences)} FROM {grantee}",
                f"GRANT USAGE ON SEQUENCE {_idents(sequences)} TO {grantee}",
            ]
        for statement in statements:
            cursor.execute(statement)
        held = [
            privilege
            for privilege in LEDGER_FORBIDDEN
            if _has_table_privilege(cursor=cursor, role=role, table=LEDGER_TABLE, what=privilege)
        ]
        if held:
            raise CommandError(
                f"{role!r} still has {', '.join(held)} on {LEDGER_TABLE} through PUBLIC or a "
                f"role it belongs to: revoke it there (nothing was changed)."
            )
    return Grants(owner=owner, schema=schema, app_tables=app_tables, sequences=sequences)


class Command(BaseCommand):
    help = (
        "Grant the app's runtime PostgreSQL role what the app needs, with SELECT and INSERT only "
        "on ledger entries. Run as the migration role after migrate; idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "role",
            nargs="?",
            help=f"the runtime role the app servers connect as (default: ${ROLE_VARIABLE})",
        )
        parser.add_argument(
            "--if-configured",
            action="store_true",
            help=f"do nothing when no role is given and {ROLE_VARIABLE} is not set (make migrate)",
        )

    def handle(self, *args: Any, role: str | None, if_configured: bool, **options: Any) -> None:
        # The settings have loaded .env into the environment by now.
        role = (role or os.environ.get(ROLE_VARIABLE, "")).strip()
        if not role:
            if if_configured:
                return
            raise CommandError(f"Give the runtime role (ROLE) or set {ROLE_VARIABLE}.")
        if connection.vendor != "postgresql":
            raise CommandError(
                f"Database roles need PostgreSQL; this database is {connection.vendor}, "
                f"which has no roles or grants."
            )
        grants = grants_apply(role=role)
        self.stdout.write(
            f"Granted {role}: SELECT, INSERT, UPDATE, DELETE on {len(grants.app_tables)} "
            f"table(s); SELECT, INSERT only on {LEDGER_TABLE}; SELECT on {MIGRATIONS_TABLE}; "
            f"USAGE on {len(grants.sequences)} sequence(s). Tables that {grants.owner} creates "
            f"later in {grants.schema} get the same (run this again after migrate to keep "
            f"{LEDGER_TABLE}'s restriction if a migration recreates it)."
        )
