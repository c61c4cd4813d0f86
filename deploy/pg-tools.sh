# shellcheck shell=bash
# Shared by deploy/backup.sh and deploy/restore-drill.sh (sourced, not run): where the app and its
# Python are, DATABASE_URL as libpq reads it, and PostgreSQL client programs of the server's
# major version (pg_dump refuses a newer server; pg_restore may not read a newer dump).

app_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# The app's Python: PYTHON, else the checkout's (or the image's) .venv, else python3.
app_python() {
    if [[ -n "${PYTHON:-}" ]]; then
        echo "$PYTHON"
    elif [[ -x "$app_dir/.venv/bin/python" ]]; then
        echo "$app_dir/.venv/bin/python"
    else
        command -v python3 || die "no Python found: set PYTHON to the app's interpreter"
    fi
}

# The scripts' command line: one DIR, and DATABASE_URL in the environment. Sets `dir`.
dir_argument() {
    if [[ $# -ne 1 ]]; then
        echo "usage: DATABASE_URL=postgres://... $0 DIR" >&2
        exit 2
    fi
    [[ -n "${DATABASE_URL:-}" ]] || die "DATABASE_URL is not set"
    dir="$1"
}

manage() {
    (cd "$app_dir" && "$(app_python)" manage.py "$@")
}

# DATABASE_URL (django-environ's schemes) as a libpq connection URI.
libpq_url() {
    case "$1" in
    postgres://* | postgresql://*) echo "$1" ;;
    pgsql://*) echo "postgresql://${1#pgsql://}" ;;
    postgis://*) echo "postgresql://${1#postgis://}" ;;
    *) die "DATABASE_URL must be a PostgreSQL URL (postgres://user:password@host:5432/dbname)" ;;
    esac
}

# The same URL naming another database on the same server (query string kept).
url_with_database() {
    "$(app_python)" - "$1" "$2" <<'PY'
import sys
from urllib.parse import quote, urlsplit, urlunsplit

url, name = sys.argv[1], sys.argv[2]
print(urlunsplit(urlsplit(url)._replace(path="/" + quote(name))))
PY
}

major_of() {
    # "pg_dump (PostgreSQL) 17.2 (Debian 17.2-1)" -> 17
    "$1" --version | awk '{print $3}' | cut -d. -f1
}

# Sets pg_bin to a directory whose pg_dump, pg_dumpall, pg_restore and psql are at least the
# server's major version: PG_BINDIR if set; else Debian's /usr/lib/postgresql/<major>/bin for the
# server's major; else the newest under /usr/lib/postgresql; else the ones on PATH.
find_pg_bin() {
    local url="$1" candidate psql_any server_major dir
    if [[ -n "${PG_BINDIR:-}" ]]; then
        pg_bin="$PG_BINDIR"
    else
        psql_any="$(command -v psql || compgen -G '/usr/lib/postgresql/*/bin/psql' | sort -rV | head -n1 || true)"
        [[ -n "$psql_any" ]] || die "psql not found: install the PostgreSQL client (apt-get install postgresql-client) or set PG_BINDIR"
        server_major="$("$psql_any" "$url" -XAtqc 'SHOW server_version_num')" ||
            die "cannot connect to the database at DATABASE_URL"
        server_major=$((server_major / 10000))
        pg_bin=""
        for dir in "/usr/lib/postgresql/$server_major/bin" \
            $(compgen -G '/usr/lib/postgresql/*/bin' | sort -rV); do
            if [[ -x "$dir/pg_dump" && -x "$dir/pg_restore" ]]; then
                pg_bin="$dir"
                break
            fi
        done
        if [[ -z "$pg_bin" ]]; then
            candidate="$(command -v pg_dump)" || die "pg_dump not found: apt-get install postgresql-client-$server_major, or set PG_BINDIR"
            pg_bin="$(dirname "$candidate")"
        fi
        if (($(major_of "$pg_bin/pg_dump") < server_major)); then
            die "$pg_bin/pg_dump is PostgreSQL $(major_of "$pg_bin/pg_dump"), older than the server ($server_major): install postgresql-client-$server_major or set PG_BINDIR"
        fi
    fi
    for program in pg_dump pg_dumpall pg_restore psql; do
        [[ -x "$pg_bin/$program" ]] || die "$pg_bin/$program is missing (PG_BINDIR?)"
    done
}

# Seconds since START (an $EPOCHREALTIME), one decimal.
seconds_since() {
    LC_ALL=C awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'
}
