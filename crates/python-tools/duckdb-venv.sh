#!/usr/bin/env bash
# Prepares target/duckdb-venv with the pinned DuckDB, the independent Parquet reader of the
# tests and benchmarks; prints the venv's python. Idempotent, and parallel
# callers (test binaries, scripts/test.sh) wait on one lock instead of racing pip.
set -euo pipefail
DUCKDB_VERSION=1.4.4
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/duckdb-venv"
mkdir -p "$root/target"
exec 9>"$root/target/duckdb-venv.lock"
flock 9
if [ ! -f "$venv/.duckdb-$DUCKDB_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "duckdb==$DUCKDB_VERSION" >&2
  touch "$venv/.duckdb-$DUCKDB_VERSION"
fi
echo "$venv/bin/python"
