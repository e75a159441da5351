//! DuckDB (from PyPI, in the project-local `target/duckdb-venv`) as the independent reader of
//! the Parquet files we write: tests compare what it reads with the JSON source.

pub use python_tools::duckdb::{python, rows};
