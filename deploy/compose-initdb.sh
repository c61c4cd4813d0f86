#!/usr/bin/env bash
# Run once by the postgres container of deploy/compose.yaml, when its data volume is new: the two
# roles of README "Database roles". mockroom_owner owns the database and runs the release step
# (the migrate service); mockroom_app is what the web server and the workers connect as, and
# `manage.py grant_runtime_role` gives it only SELECT and INSERT on ledger entries.
set -euo pipefail
: "${MOCKROOM_OWNER_PASSWORD:?set MOCKROOM_OWNER_PASSWORD in .env}"
: "${MOCKROOM_APP_PASSWORD:?set MOCKROOM_APP_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_password="$MOCKROOM_OWNER_PASSWORD" -v app_password="$MOCKROOM_APP_PASSWORD" <<'SQL'
CREATE ROLE mockroom_owner LOGIN CREATEDB PASSWORD :'owner_password';
CREATE ROLE mockroom_app LOGIN PASSWORD :'app_password';
CREATE DATABASE mockroom OWNER mockroom_owner;
SQL
