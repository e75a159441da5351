#!/usr/bin/env bash
# Benchmarks (figures printed, never asserted): copy verification and envelope decoding
# throughput, and the orchestration overhead of a run for 100, 1,000 and 10,000 partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked -p partner-billing-export --bench throughput
cargo bench --locked -p partner-billing-export --bench fanin
# Parquet conversion of one real-shaped billed-usage partition (~400k rows) against DuckDB:
# throughput and peak RSS of each converter as a child process (BENCH_ROWS=... for another size).
cargo bench --locked -p billing-columnar --bench parquet
