#!/usr/bin/env bash
# The fault suite (issue 14): PostgreSQL HA (Patroni) and SQLite fault scenarios under load,
# each bounded in time (about 4 minutes in all on a 2-core machine). scripts/test.sh calls it
# with STUB_BIN set; it uses the repository's .venv (tests/e2e/requirements.txt + httpx).
#   tests/faults/run.sh [pytest args]       e.g. -k switchover
# The figures of each scenario are appended as JSON lines to $STUB_FAULTS_RESULTS when set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${STUB_PYTHON:-$repo/.venv/bin/python}
if ! "$python" -c 'import httpx' 2>/dev/null; then
  "$python" -m pip install -q -r "$here/requirements.txt"
fi
export STUB_BIN=${STUB_BIN:-$repo/build/release/src/stub}
# In CI the HA cluster is required: a missing patroni is a failure, not a skip.
if [[ ${CI:-} == true ]]; then export STUB_REQUIRE_HA=1; fi
cd "$here"
exec timeout 600 "$python" -m pytest -q -p no:cacheprovider test_faults.py "$@"
