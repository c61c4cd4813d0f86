#!/usr/bin/env bash
# The restore drill: proves that a backup made by deploy/backup.sh brings the ledger back.
#
#   DATABASE_URL=postgres://mockroom_owner:...@db:5432/mockroom deploy/restore-drill.sh DIR
#
# 1. creates a scratch database on DATABASE_URL's server (mockroom_drill_<time>_<pid>; the role
#    needs CREATEDB) and restores DIR/mockroom.dump into it with pg_restore, timed;
# 2. runs manage.py ledger_verify on it (every balance is the sum of its entries, held tokens are
#    the open holds, versions are gapless);
# 3. runs manage.py ledger_fingerprint --compare DIR/ledger-fingerprint.json on it (every
#    account's balance, held tokens, version, entry count and the hash of its entries are what
#    they were when the backup was taken);
# 4. drops the scratch database, whatever happened.
# Exits 0 only when the restore, the check and the fingerprint all succeed; otherwise 1, with
# what failed. The production database is only read from (the connection that creates and drops
# the scratch database). Objects are restored owned by the connecting role (--no-owner
# --no-privileges): the drill proves the data, roles.sql is for a real restore.
set -euo pipefail

# shellcheck source=pg-tools.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/pg-tools.sh"

dir_argument "$@"
dump="$dir/mockroom.dump"
fingerprint="$dir/ledger-fingerprint.json"
[[ -r "$dump" ]] || die "$dump not found (make one with deploy/backup.sh $dir)"
[[ -r "$fingerprint" ]] || die "$fingerprint not found (make one with deploy/backup.sh $dir)"
url="$(libpq_url "$DATABASE_URL")"
find_pg_bin "$url"

scratch="mockroom_drill_$(date -u +%Y%m%d%H%M%S)_$$"
scratch_url="$(url_with_database "$url" "$scratch")"
scratch_app_url="$(url_with_database "$DATABASE_URL" "$scratch")"
name="$(basename "$0")"

psql_admin() {
    "$pg_bin/psql" "$url" -XAtq -v ON_ERROR_STOP=1 "$@"
}
created=0
# shellcheck disable=SC2317  # called from the EXIT trap
drop_scratch() {
    if [[ "$created" -eq 1 ]]; then
        if psql_admin -c "DROP DATABASE IF EXISTS \"$scratch\" WITH (FORCE)"; then
            echo "$name: dropped the scratch database $scratch"
        else
            echo "$name: could not drop the scratch database $scratch: drop it by hand" >&2
        fi
    fi
}
trap drop_scratch EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql_admin -c "CREATE DATABASE \"$scratch\"" || die "cannot create the scratch database $scratch (the role needs CREATEDB)"
created=1

started=$EPOCHREALTIME
if ! "$pg_bin/pg_restore" --exit-on-error --no-owner --no-privileges --dbname="$scratch_url" "$dump"; then
    echo "$name: FAILED: pg_restore could not restore $dump" >&2
    exit 1
fi
echo "$name: restored $dump ($(stat -c %s "$dump") bytes) into $scratch in $(seconds_since "$started") s"

failed=()
if ! DATABASE_URL="$scratch_app_url" manage ledger_verify; then
    failed+=("ledger_verify")
fi
if ! DATABASE_URL="$scratch_app_url" manage ledger_fingerprint --compare="$fingerprint"; then
    failed+=("the ledger fingerprint")
fi
if [[ ${#failed[@]} -gt 0 ]]; then
    what="${failed[0]}"
    [[ ${#failed[@]} -eq 1 ]] || what="${failed[0]} and ${failed[1]}"
    echo "$name: FAILED: the restored ledger does not pass $what (above)" >&2
    exit 1
fi
echo "$name: PASSED: the restored ledger verifies and matches $fingerprint"
