#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need first
# (Azurite from npm, the infra checkers from PyPI), then the Rust suites and the infra checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f package-lock.json ]; then
  echo "==> installing test tools from npm (Azurite)"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "==> cargo test (every crate of the workspace)"
cargo test --workspace --locked --lib --bins --tests -- --color never

echo "==> the deployed handler links no emulator, test or build-tool crate"
if cargo tree --locked -e normal -p partner-billing-export --prefix none |
  grep -E '^(partner-billing-local|test-support|xtask) '; then
  echo "the handler's dependency tree contains the crates above" >&2
  exit 1
fi

if [ -x scripts/check-infra.sh ]; then
  echo "==> infra checks"
  scripts/check-infra.sh
fi
echo "==> all tests passed"
