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
crates/python-tools/duckdb-venv.sh >/dev/null # DuckDB (PyPI) for billing-columnar's read-back tests
crates/python-tools/focus-validator-venv.sh >/dev/null # the official FOCUS validator (PyPI)
cargo test --workspace --locked --lib --bins --tests -- --color never

echo "==> the deployed handler links no emulator, test or build-tool crate"
if cargo tree --locked -e normal -p partner-billing-export --prefix none |
  grep -E '^(partner-billing-local|python-tools|test-support|xtask) '; then
  echo "the handler's dependency tree contains the crates above" >&2
  exit 1
fi

echo "==> deterministic simulation: 1,000 seeds of the whole pipeline under faults"
scripts/simulate.sh --seeds 1000

echo "==> the README's main command: cargo local"
cargo --locked --quiet local --out target/test-local-run --timeout 240 >target/test-local-run.txt 2>&1 ||
  { cat target/test-local-run.txt >&2; exit 1; }
tail -n 4 target/test-local-run.txt

echo "==> package: the portable handler (glibc <= 2.28) and the deployable zip"
scripts/package.sh target/partner-billing-export.zip

echo "==> the package runs the local pipeline (unpacked as the host's script root, its own handler)"
cargo --locked --quiet local --package target/partner-billing-export.zip --out target/test-local-packaged \
  --timeout 240 >target/test-local-packaged.txt 2>&1 ||
  { cat target/test-local-packaged.txt >&2; exit 1; }
tail -n 4 target/test-local-packaged.txt

if [ -x scripts/check-infra.sh ]; then
  echo "==> infra checks"
  scripts/check-infra.sh
fi
echo "==> all tests passed"
