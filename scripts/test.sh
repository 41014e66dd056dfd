#!/usr/bin/env bash
# Builds Stub and runs the whole test suite: the C++ suites (unit, property, Store conformance)
# and the HTTP end-to-end suite against the real `stub` binary, in the release build and again
# under AddressSanitizer+UBSan (then the libFuzzer targets, scripts/fuzz.sh) and
# ThreadSanitizer. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's heading says when it started, so a slow stage shows in CI's log.
stage() { echo "== $1 (at ${SECONDS}s)"; }

bash scripts/install-deps.sh

stage "clang-format"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run -Werror

# A throwaway PostgreSQL cluster for the PostgreSQL store suites and the multi-instance tests,
# stopped and removed on exit. STUB_REQUIRE_POSTGRES=1 makes those suites fail rather than skip
# if it were missing.
pg_dir=$(mktemp -d /tmp/stub-test-pg.XXXXXX)
cleanup_pg() {
  bash scripts/pg-cluster.sh stop "$pg_dir" || true
  rm -rf "$pg_dir"
}
trap cleanup_pg EXIT
stage "PostgreSQL test cluster"
STUB_TEST_POSTGRES_URL=$(bash scripts/pg-cluster.sh start "$pg_dir")
export STUB_TEST_POSTGRES_URL STUB_REQUIRE_POSTGRES=1
echo "$STUB_TEST_POSTGRES_URL"

# The sanitizer builds run every suite again: the C++ suites and the HTTP end-to-end suite
# against a sanitized `stub` binary. STUB_SANITIZERS=0 skips them for a quicker local run.
sanitizers=${STUB_SANITIZERS:-1}

stage "dashboard build (web/dist, embedded by the C++ build)"
bash scripts/build-web.sh

stage "release build"
cmake --preset release >/dev/null
cmake --build --preset release

# The other builds, g++ (Debian's default compiler must build the tree too, warnings on) and
# the two sanitizer builds, compile in the background at the lowest CPU priority from here on
# (scripts/build-presets.sh), while the release suites run; each is waited for where its
# suites start. STUB_GCC_BUILD=0 and STUB_SANITIZERS=0 skip them for a quicker local run.
logs=build/logs
mkdir -p "$logs"
rm -f "$logs"/*.status
background=()
if [[ "${STUB_GCC_BUILD:-1}" == 1 ]]; then background+=(gcc-release); fi
if [[ "$sanitizers" == 1 ]]; then background+=(asan tsan); fi
background_pid=
if ((${#background[@]} > 0)); then
  # Its own session, so that an early exit stops the compilers with it.
  setsid bash scripts/build-presets.sh "$logs" "${background[@]}" &
  background_pid=$!
fi
cleanup() {
  if [[ -n "$background_pid" ]]; then kill -- "-$background_pid" 2>/dev/null || true; fi
  cleanup_pg
}
trap cleanup EXIT
wait_for_build() {
  local preset=$1
  stage "$preset build (compiling in the background since the release build)"
  while [[ ! -f "$logs/$preset.status" ]]; do
    if ! kill -0 "$background_pid" 2>/dev/null && [[ ! -f "$logs/$preset.status" ]]; then
      echo "the background builds stopped before $preset was built (log: $logs/$preset.log)" >&2
      exit 1
    fi
    sleep 2
  done
  if [[ $(cat "$logs/$preset.status") != 0 ]]; then
    tail -n 80 "$logs/$preset.log" >&2
    echo "the $preset build failed (whole log: $logs/$preset.log)" >&2
    exit 1
  fi
  tail -n 1 "$logs/$preset.log"
}
stage "C++ suites (release)"
ctest --preset release --output-on-failure

stage "Python environment for the end-to-end suite"
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
# The official openai npm client the proxy tests drive (pinned by its package-lock.json).
(cd tests/e2e/npm && npm ci --no-audit --no-fund --silent)

stage "HTTP end-to-end suite (release)"
STUB_BIN="$PWD/build/release/src/stub" .venv/bin/python -m pytest -q tests/e2e

stage "Python SDK (sdk/python, against the release server)"
STUB_BIN="$PWD/build/release/src/stub" bash sdk/python/test.sh

stage "TypeScript SDK (sdk/typescript, against the release server)"
STUB_BIN="$PWD/build/release/src/stub" bash sdk/typescript/test.sh

stage "Dashboard in a real browser (web/, chromium against the release server)"
STUB_BIN="$PWD/build/release/src/stub" bash web/test.sh

stage "Fault suite (tests/faults: a Patroni HA cluster and SQLite faults under load)"
STUB_BIN="$PWD/build/release/src/stub" bash tests/faults/run.sh

if [[ "${STUB_GCC_BUILD:-1}" == 1 ]]; then
  wait_for_build gcc-release
fi

if [[ "$sanitizers" == 1 ]]; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  export TSAN_OPTIONS="halt_on_error=1"
  # Every end-to-end file runs under one sanitizer server (all of them ran on release above):
  # the files that feed the edge hostile or odd input under AddressSanitizer+UBSan, the rest,
  # the concurrent and fault scenarios and any new file, under ThreadSanitizer.
  asan_files=(test_authz_matrix test_bad_input test_serve_hardening test_openapi test_cli
    test_query_export test_checkpoints test_tamper test_required_tags test_vendor_limits
    test_policies test_dashboard_sessions)
  # The soak measures the release server's memory and latency: a sanitizer's shadow memory
  # and slowdown are not what it bounds.
  release_only=(test_soak)
  e2e_files=(tests/e2e/test_*.py)
  declare -A e2e_for=([asan]="" [tsan]="")
  for file in "${e2e_files[@]}"; do
    name=$(basename "$file" .py)
    if [[ " ${release_only[*]} " == *" $name "* ]]; then continue; fi
    if [[ " ${asan_files[*]} " == *" $name "* ]]; then e2e_for[asan]+=" $file"; else e2e_for[tsan]+=" $file"; fi
  done
  for preset in asan tsan; do
    wait_for_build "$preset"
    stage "C++ suites ($preset)"
    ctest --preset "$preset" --output-on-failure
    stage "HTTP end-to-end suite ($preset server:${e2e_for[$preset]//tests\/e2e\//})"
    # shellcheck disable=SC2086 # the list is words on purpose
    STUB_BIN="$PWD/build/$preset/src/stub" .venv/bin/python -m pytest -q ${e2e_for[$preset]}
    if [[ "$preset" == asan ]]; then
      # The libFuzzer targets reuse the asan tree (STUB_BUILD_FUZZ: its objects carry the
      # coverage hooks already), so this adds their small links and 30 s per target.
      stage "fuzz targets (fuzz/, ${STUB_FUZZ_SECONDS:-30}s each)"
      bash scripts/fuzz.sh "${STUB_FUZZ_SECONDS:-30}"
    fi
  done
fi
stage "done"
