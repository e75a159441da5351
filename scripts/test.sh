#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need first
# (Azurite from npm, the infra checkers from PyPI), then the Rust suites and the infra checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f package-lock.json ]; then
  echo "==> installing test tools from npm (Azurite)"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "==> cargo test"
cargo test --locked --lib --bins --tests -- --color never

if [ -x scripts/check-infra.sh ]; then
  echo "==> infra checks"
  scripts/check-infra.sh
fi
echo "==> all tests passed"
