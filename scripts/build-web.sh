#!/usr/bin/env bash
# Builds the dashboard (web/) into web/dist, which the next C++ build embeds into `stub`.
# Needs Node >= 18 and npm (scripts/install-deps.sh brings them); installs the pinned packages
# from web/package-lock.json with `npm ci`. Without it the binary serves a placeholder page.
set -euo pipefail
cd "$(dirname "$0")/../web"
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npx tsc --noEmit -p .
node build.mjs
