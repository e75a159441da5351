#!/usr/bin/env bash
# Prepares target/duckdb-venv with the pinned DuckDB, the independent Parquet reader of the
# tests and benchmarks; prints the venv's python (venv.sh).
set -euo pipefail
DUCKDB_VERSION=1.4.4
exec "$(dirname "$0")/venv.sh" duckdb-venv "duckdb-$DUCKDB_VERSION" python3 "duckdb==$DUCKDB_VERSION"
