#!/usr/bin/env bash
# The S3 gateway with Python's S3 clients (boto3, pyarrow, polars) against a real
# `fdw-engine serve` process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash python/venv.sh
cargo build --locked --quiet -p fdw-engine -p fdw-tools --bin fdw-engine --bin fdw-bench
cd python
exec ../target/python/bin/python -m pytest -q tests "$@"
