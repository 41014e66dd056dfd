#!/usr/bin/env bash
# Builds Stub and runs its main job on the embedded default: a local server with a demo org
# and the runaway-agent replay. Extra arguments go to `stub demo` (see `stub demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target stub
exec ./build/release/src/stub demo "$@"
