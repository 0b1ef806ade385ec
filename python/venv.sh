#!/usr/bin/env bash
# The venv of the Python tests and the seed pipeline: python/requirements.txt, pinned,
# from PyPI, under target/python; made again only when that file changes.
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
