#!/usr/bin/env bash
# venv.sh NAME STAMP PYTHON PACKAGE...: prepares target/NAME, a venv of PYTHON with the
# PACKAGEs installed, and prints the venv's python. Idempotent (STAMP names what is
# installed; another STAMP rebuilds the venv), and parallel callers (test binaries,
# scripts/test.sh) wait on one lock instead of racing pip.
set -euo pipefail
name=$1 stamp=$2 python=$3
shift 3
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/$name"
mkdir -p "$root/target"
exec 9>"$root/target/$name.lock"
flock 9
if [ ! -f "$venv/.$stamp" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  touch "$venv/.$stamp"
fi
echo "$venv/bin/python"
