#!/usr/bin/env bash
# Test entry for the Python SDK (sdk/python): makes its own venv, installs the pinned test
# requirements and the package (editable), then runs mypy --strict and pytest against the real
# `stub serve` binary named by STUB_BIN. Exits non-zero on any failure.
#
#   STUB_BIN=/path/to/stub bash sdk/python/test.sh [pytest args...]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
venv="${STUB_SDK_VENV:-$here/.venv}"

export STUB_BIN="${STUB_BIN:-$repo/build/release/src/stub}"
case "$STUB_BIN" in /*) ;; *) STUB_BIN="$repo/$STUB_BIN" ;; esac
if [ ! -x "$STUB_BIN" ]; then
    echo "sdk/python/test.sh: no stub binary at $STUB_BIN (set STUB_BIN)" >&2
    exit 2
fi

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements-test.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$here"

cd "$here"
echo "== mypy --strict (sdk/python/src/stub_ledger)"
"$venv/bin/python" -m mypy --strict src/stub_ledger
echo "== pytest (sdk/python/tests, STUB_BIN=$STUB_BIN)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
