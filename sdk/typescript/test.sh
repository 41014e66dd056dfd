#!/usr/bin/env bash
# The TypeScript SDK's test entry: installs from the lockfile, builds and typechecks with tsc,
# runs the node:test suites against a real `stub serve` ($STUB_BIN). Exits non-zero on failure.
set -euo pipefail
# A relative STUB_BIN is taken from the caller's directory, before this script changes it.
if [ -n "${STUB_BIN:-}" ]; then STUB_BIN="$(realpath -m "$STUB_BIN")"; fi
cd "$(dirname "$0")"
repo_root="$(cd ../.. && pwd)"
export STUB_BIN="${STUB_BIN:-$repo_root/build/release/src/stub}"
if [ ! -x "$STUB_BIN" ]; then
  echo "sdk/typescript/test.sh: no stub binary at $STUB_BIN (set STUB_BIN)" >&2
  exit 1
fi
npm ci --no-audit --no-fund
rm -rf dist build
npm run build            # tsc: src -> dist (+ the price file)
npm run build:test       # tsc: tests, bench and examples typechecked and compiled into build/
node --test --test-reporter=spec --test-concurrency=4 build/sdk/typescript/test/*.test.js
