#!/usr/bin/env bash
# A logical backup of Mockroom's database, with what the restore drill checks it against.
#
#   DATABASE_URL=postgres://mockroom_owner:...@db:5432/mockroom deploy/backup.sh DIR
#
# Writes, in DIR (created if needed; files readable by their owner only):
#   mockroom.dump            pg_dump -Fc of the database (pg_restore reads it)
#   roles.sql                pg_dumpall --roles-only: the roles and, as a superuser, their
#                            passwords (otherwise without passwords, and it says so)
#   ledger-fingerprint.json  manage.py ledger_fingerprint: per account its balance, held tokens,
#                            version and a SHA-256 of its entries
#
# The dump and the fingerprint describe the same instant, however busy the ledger is: one
# session opens a REPEATABLE READ transaction and exports its snapshot (pg_export_snapshot());
# pg_dump (--snapshot) and ledger_fingerprint (--snapshot) both read in exactly that snapshot,
# while that session stays open. A fingerprint taken before or after the dump would differ from
# it by whatever was bought in between, and the drill could not tell that from a lost row.
#
# Connect as the migration role (README, "Database roles"): it owns, and so can read, every table
# and sequence. The app's settings are loaded for the fingerprint: run it with the app's
# environment (SECRET_KEY...), as the systemd unit mockroom-backup.service does. The PostgreSQL
# client programs must be of the server's major version or newer (PG_BINDIR to choose them).
# deploy/restore-drill.sh DIR proves the result. Point-in-time recovery: README, "Backups".
set -euo pipefail

# shellcheck source=pg-tools.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/pg-tools.sh"

dir_argument "$@"
url="$(libpq_url "$DATABASE_URL")"
find_pg_bin "$url"

umask 077
mkdir -p "$dir"
started=$EPOCHREALTIME

# The session whose snapshot the dump and the fingerprint share; it stays open until both ran.
coproc SNAPSHOT { "$pg_bin/psql" "$url" -XAtq -v ON_ERROR_STOP=1 2>&1; }
snapshot_in="${SNAPSHOT[1]}"
snapshot_out="${SNAPSHOT[0]}"
# shellcheck disable=SC2317  # called from the EXIT trap
finish_snapshot() {
    if [[ -n "${SNAPSHOT_PID:-}" ]]; then
        { echo "ROLLBACK;" >&"$snapshot_in"; } 2>/dev/null || true
        exec {snapshot_in}>&- || true
        wait "$SNAPSHOT_PID" 2>/dev/null || true
    fi
}
trap 'finish_snapshot; rm -f "$dir"/*.partial' EXIT
echo "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();" >&"$snapshot_in"
snapshot=""
read -r -t 60 snapshot <&"$snapshot_out" || true
[[ "$snapshot" =~ ^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$ ]] ||
    die "could not export a snapshot from the database: ${snapshot:-no answer}"

"$pg_bin/pg_dump" --format=custom --snapshot="$snapshot" --file="$dir/mockroom.dump.partial" "$url" ||
    die "pg_dump failed"
DATABASE_URL="$DATABASE_URL" manage ledger_fingerprint --snapshot="$snapshot" \
    --output="$dir/ledger-fingerprint.json.partial" || die "ledger_fingerprint failed"
finish_snapshot
SNAPSHOT_PID=""

# The roles are the cluster's, not the database's: a restore elsewhere needs them first. Their
# passwords can only be read by a superuser; anyone else gets the roles without them.
if ! "$pg_bin/pg_dumpall" --roles-only --dbname="$url" --file="$dir/roles.sql.partial" 2>/dev/null; then
    "$pg_bin/pg_dumpall" --roles-only --no-role-passwords --dbname="$url" \
        --file="$dir/roles.sql.partial" || die "pg_dumpall --roles-only failed"
    echo "$(basename "$0"): roles.sql has no passwords (only a superuser can read them): set them again after restoring it." >&2
fi

mv "$dir/mockroom.dump.partial" "$dir/mockroom.dump"
mv "$dir/ledger-fingerprint.json.partial" "$dir/ledger-fingerprint.json"
mv "$dir/roles.sql.partial" "$dir/roles.sql"
printf '%s: backup in %s (dump %s bytes, snapshot %s) took %s s\n' "$(basename "$0")" "$dir" \
    "$(stat -c %s "$dir/mockroom.dump")" "$snapshot" "$(seconds_since "$started")"
