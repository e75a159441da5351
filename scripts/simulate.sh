#!/usr/bin/env bash
# Deterministic simulation of the whole pipeline under faults (crates/sim):
#   scripts/simulate.sh --seeds 1000      many seeds; ends with "N seeds, M violations"
#   scripts/simulate.sh --seed 123        replay one seed exactly
# Exits non-zero when any seed violates an invariant.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --locked --quiet -p partner-billing-sim --bin simulate -- "$@"
