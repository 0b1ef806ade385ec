#!/usr/bin/env bash
# The S3 gateway with Python's S3 clients (boto3, pyarrow, polars), pinned in
# python/requirements.txt and installed from PyPI into a venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python
stamp="$venv/.requirements"
if ! cmp -s python/requirements.txt "$stamp" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r python/requirements.txt
  cp python/requirements.txt "$stamp"
fi
cargo build --locked --quiet -p fdw-engine --bin fdw-engine
cd python
exec "../$venv/bin/python" -m pytest -q tests "$@"
