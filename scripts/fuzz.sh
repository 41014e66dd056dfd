#!/usr/bin/env bash
# Runs every libFuzzer target (fuzz/, docs/fuzzing.md) for SECONDS each (default 30) on a
# scratch copy of its seed corpus, and fails on any crash, leak, UBSan report, timeout or
# failed property, printing the reproducer's path. Builds the targets first if needed, in the
# asan preset's tree (STUB_BUILD_FUZZ is on there: the same objects as the sanitized suites).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 60 money request
#
# STUB_FUZZ_BUILD_DIR picks another build tree configured with -DSTUB_BUILD_FUZZ=ON (clang).
# Generated inputs stay in the scratch directory (printed); the repo's corpus is never written.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
build=${STUB_FUZZ_BUILD_DIR:-build/asan}

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  targets=()
  for dir in fuzz/corpus/*/; do targets+=("$(basename "$dir")"); done
fi

if [[ ! -f "$build/build.ninja" && ! -f "$build/Makefile" ]]; then
  [[ "$build" == build/asan ]] || { echo "fuzz.sh: $build is not configured" >&2; exit 2; }
  cmake --preset asan >/dev/null
fi
cmake --build "$build" --target $(printf 'fuzz_%s ' "${targets[@]}")

scratch=$(mktemp -d /tmp/stub-fuzz.XXXXXX)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
failed=()
for target in "${targets[@]}"; do
  binary="$build/fuzz/fuzz_$target"
  work="$scratch/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp fuzz/corpus/"$target"/* "$work/corpus/"
  echo "== fuzz_$target (${seconds}s, seeds: $(ls fuzz/corpus/"$target" | wc -l))"
  status=0
  "$binary" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
    >"$work/log" 2>&1 || status=$?
  # The last status line: executions, coverage (cov: edges, ft: features), corpus, exec/s.
  grep -E '^#[0-9]+' "$work/log" | tail -1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$work/log" || true
  if [[ $status -ne 0 ]]; then
    failed+=("$target")
    tail -40 "$work/log"
    for artifact in "$work"/artifacts/*; do
      [[ -e "$artifact" ]] || continue
      echo "fuzz_$target FAILED: reproduce with  $binary $artifact"
    done
    echo "(full log: $work/log)"
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: ${#failed[@]} target(s) failed: ${failed[*]} (inputs kept in $scratch)" >&2
  exit 1
fi
rm -rf "$scratch"
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, no failures"
