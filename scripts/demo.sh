#!/usr/bin/env bash
# Builds Stub with its dashboard and runs its main job on the embedded default: a local server
# with a demo org and the runaway-agent replay, then the mission-control dashboard at the
# printed URL. Extra arguments go to `stub demo` (see `stub demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build-web.sh   # web/dist, embedded by the C++ build below
cmake --preset release >/dev/null
cmake --build --preset release --target stub
exec ./build/release/src/stub demo "$@"
