#!/usr/bin/env bash
# Benchmarks (figures printed, never asserted): copy verification and envelope decoding
# throughput, the orchestration overhead of a run for 100, 1,000 and 10,000 partitions, and
# the cost of repairing one lost copy message in a 10,000-part run, and a watchdog pass and a
# status page beside a long history.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked -p partner-billing-export --bench throughput
cargo bench --locked -p partner-billing-export --bench fanin
# What one lost copy message costs a 10,000-part run: storage reads per phase, messages resent.
cargo bench --locked -p partner-billing-export --bench repair
# What a watchdog pass and a status page cost beside 0, 10,000 and 100,000 settled runs.
cargo bench --locked -p partner-billing-export --bench watchdog
# Parquet conversion of one real-shaped billed-usage partition (~400k rows) against DuckDB:
# throughput and peak RSS of each converter as a child process (BENCH_ROWS=... for another size).
# Built with the release profile (fat LTO, one codegen unit), as the deployed handler is.
cargo bench --locked --profile release -p billing-columnar --bench parquet
