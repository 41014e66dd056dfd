#!/usr/bin/env bash
# The dashboard's end-to-end tests: installs the pinned packages (npm ci), type-checks and
# builds the dashboard, then drives Debian's chromium (playwright-core, never a downloaded
# browser) against a real `stub serve` from STUB_BIN. That binary must embed this build: run
# the C++ build after scripts/build-web.sh (scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")"
if [[ -z "${STUB_BIN:-}" ]]; then
  echo "web/test.sh: set STUB_BIN to the stub binary" >&2
  exit 2
fi
case "$STUB_BIN" in /*) ;; *) STUB_BIN="$OLDPWD/$STUB_BIN" ;; esac
export STUB_BIN
if [[ ! -x /usr/bin/chromium ]]; then
  echo "web/test.sh: /usr/bin/chromium is missing (bash scripts/install-deps.sh installs it)" >&2
  exit 2
fi
npm ci --no-audit --no-fund --loglevel=error
npx tsc --noEmit -p .
node build.mjs
node --test --test-concurrency=1 --test-reporter=spec tests/
