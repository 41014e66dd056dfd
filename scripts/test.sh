#!/usr/bin/env bash
# Builds Stub and runs the whole test suite: the C++ suites (unit, property, Store conformance)
# and the HTTP end-to-end suite against the real `stub` binary, in the release build and again
# under AddressSanitizer+UBSan and ThreadSanitizer. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

echo "== clang-format"
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
echo "== PostgreSQL test cluster"
STUB_TEST_POSTGRES_URL=$(bash scripts/pg-cluster.sh start "$pg_dir")
export STUB_TEST_POSTGRES_URL STUB_REQUIRE_POSTGRES=1
echo "$STUB_TEST_POSTGRES_URL"

# The sanitizer builds run every suite again: the C++ suites and the HTTP end-to-end suite
# against a sanitized `stub` binary. STUB_SANITIZERS=0 skips them for a quicker local run.
sanitizers=${STUB_SANITIZERS:-1}

echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release
echo "== C++ suites (release)"
ctest --preset release --output-on-failure

echo "== Python environment for the end-to-end suite"
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt

echo "== HTTP end-to-end suite (release)"
STUB_BIN="$PWD/build/release/src/stub" .venv/bin/python -m pytest -q tests/e2e

echo "== Python SDK (sdk/python, against the release server)"
STUB_BIN="$PWD/build/release/src/stub" bash sdk/python/test.sh

echo "== TypeScript SDK (sdk/typescript, against the release server)"
STUB_BIN="$PWD/build/release/src/stub" bash sdk/typescript/test.sh

# Debian's default compiler must build it too, warnings on (no tests: the presets above are
# the ones the suites run on). STUB_GCC_BUILD=0 skips it locally.
if [[ "${STUB_GCC_BUILD:-1}" == 1 ]]; then
  echo "== g++ release build"
  cmake --preset gcc-release >/dev/null
  cmake --build --preset gcc-release
fi

if [[ "$sanitizers" == 1 ]]; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  export TSAN_OPTIONS="halt_on_error=1"
  for preset in asan tsan; do
    echo "== $preset build"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" --target stub stub_unit_tests stub_property_tests stub_store_tests
    echo "== C++ suites ($preset)"
    ctest --preset "$preset" --output-on-failure
    echo "== HTTP end-to-end suite ($preset server)"
    STUB_BIN="$PWD/build/$preset/src/stub" .venv/bin/python -m pytest -q tests/e2e
  done
fi
