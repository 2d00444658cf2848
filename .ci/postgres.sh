#!/usr/bin/env bash
# A throwaway PostgreSQL server for the Optuna parallel-worker test (tests/test_optuna_postgres.py).
#
#   eval "$(.ci/postgres.sh start)"   # installs the Debian package if needed, starts a server on a
#                                     # free loopback port, prints `export BATCHMIX_TEST_PG_URL=...`
#   .ci/postgres.sh stop              # stops it and deletes its data dir (uses BATCHMIX_TEST_PG_DATA)
#
# Only the export lines go to stdout (everything else to stderr), so `eval` is safe. The URL is
# also written to $BATCHMIX_TEST_PG_DATA/url. PostgreSQL refuses to run as root: as root the
# server runs as the `postgres` system user (created if missing).
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

pg_bindir() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  # Debian keeps the server binaries off PATH, one folder per major version.
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_postgres() {
  log "PostgreSQL server binaries not found: installing the Debian package"
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "need root or sudo to apt-get install postgresql"; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq >&2
  # The package may create and start its own `main` cluster on port 5432; it is not used (ours
  # runs on a free port in a temp dir).
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >&2
}

runuser_path() {
  command -v runuser || echo /usr/sbin/runuser  # util-linux; /usr/sbin may be off a CI user's PATH
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Globals, so the failure trap still sees them after start() returns.
bindir=""
data=""
run_as=()

start() {
  bindir="$(pg_bindir)"
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    install_postgres
    bindir="$(pg_bindir)"
  fi
  [ -x "$bindir/initdb" ] || { log "no initdb after installing postgresql"; exit 1; }

  if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    run_as=("$(runuser_path)" -u postgres --)
  fi

  local port password url
  data="$(mktemp -d "${TMPDIR:-/tmp}/batchmix-pg.XXXXXX")"
  # On any failure below: stop a half-started server and leave nothing behind.
  trap '"${run_as[@]}" "$bindir/pg_ctl" -D "$data/db" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$data"' EXIT
  port="$(free_port)"
  password="$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
  printf '%s\n' "$password" > "$data/pwfile"
  mkdir "$data/db"
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$data"; fi

  "${run_as[@]}" "$bindir/initdb" -D "$data/db" -U batchmix --pwfile="$data/pwfile" \
    --auth=scram-sha-256 -E UTF8 --no-instructions >&2
  "${run_as[@]}" "$bindir/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=100 -c fsync=off" start >&2
  PGPASSWORD="$password" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U batchmix batchmix_test >&2

  trap - EXIT
  url="postgresql+psycopg://batchmix:${password}@127.0.0.1:${port}/batchmix_test"
  printf '%s\n' "$url" > "$data/url"
  log "server on 127.0.0.1:$port, data in $data"
  echo "export BATCHMIX_TEST_PG_URL='$url'"
  echo "export BATCHMIX_TEST_PG_DATA='$data'"
}

stop() {
  local data="${BATCHMIX_TEST_PG_DATA:-}"
  [ -n "$data" ] && [ -d "$data/db" ] || { log "nothing to stop (BATCHMIX_TEST_PG_DATA unset or gone)"; return 0; }
  local bindir run_as=()
  bindir="$(pg_bindir)"
  if [ "$(id -u)" = 0 ]; then run_as=("$(runuser_path)" -u postgres --); fi
  "${run_as[@]}" "$bindir/pg_ctl" -D "$data/db" -m fast -w stop >&2 || true
  rm -rf "$data"
  log "stopped and removed $data"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
