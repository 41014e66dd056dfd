#!/usr/bin/env bash
# Builds CMake presets one after another at the lowest CPU priority, for scripts/test.sh to
# run in the background while the release suites run (they mostly wait on fsync, sockets and
# sleeps, so the compilers take the idle cores and the suites barely notice them).
#
#   scripts/build-presets.sh LOGDIR PRESET...
#
# Each preset's configure and build output goes to LOGDIR/PRESET.log; LOGDIR/PRESET.status is
# written when it is done: 0 when it built, 1 when it failed. The sanitizer presets build only
# what the suites run (no benchmarks); the g++ preset builds the whole tree.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=$1
shift
for preset in "$@"; do
  targets=()
  case "$preset" in
    asan | tsan) targets=(--target stub stub_unit_tests stub_property_tests stub_store_tests) ;;
  esac
  if nice -n 19 cmake --preset "$preset" >"$logs/$preset.log" 2>&1 &&
    nice -n 19 cmake --build --preset "$preset" "${targets[@]}" >>"$logs/$preset.log" 2>&1; then
    echo 0 >"$logs/$preset.status"
  else
    echo 1 >"$logs/$preset.status"
  fi
done
