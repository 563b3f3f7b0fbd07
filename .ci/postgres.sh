#!/usr/bin/env bash
# Install (Debian package) and start a local PostgreSQL for the store tests; idempotent.
# Prints the SQLAlchemy URL on its last line.
set -euo pipefail
PG_PORT="${BDGUARD_PG_PORT:-5432}"
PG_PASSWORD="${BDGUARD_PG_PASSWORD:-bdguard}"
PG_DB="${BDGUARD_PG_DB:-bdguard_test}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing PostgreSQL from Debian packages..." >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
PG_VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^${PG_VERSION} main$"; then
  $SUDO pg_createcluster -p "$PG_PORT" "$PG_VERSION" main >&2
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $4}' | grep -q online; then
  $SUDO pg_ctlcluster "$PG_VERSION" main start >&2
fi
ACTUAL_PORT=$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $3}')
for _ in $(seq 1 50); do
  pg_isready -q -h 127.0.0.1 -p "$ACTUAL_PORT" && break
  sleep 0.2
done
psql_as_postgres() { $SUDO runuser -u postgres -- psql -p "$ACTUAL_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(id -u)" -ne 0 ]; then psql_as_postgres() { sudo -u postgres psql -p "$ACTUAL_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }; fi
psql_as_postgres -c "ALTER USER postgres PASSWORD '${PG_PASSWORD}'" >/dev/null
if [ "$(psql_as_postgres -c "SELECT 1 FROM pg_database WHERE datname='${PG_DB}'")" != "1" ]; then
  psql_as_postgres -c "CREATE DATABASE ${PG_DB}" >/dev/null
fi
echo "postgresql+psycopg://postgres:${PG_PASSWORD}@127.0.0.1:${ACTUAL_PORT}/${PG_DB}"
