#!/usr/bin/env bash
# Builds Stub and runs the whole test suite: the C++ suites (unit, property, Store conformance)
# in the release build and under AddressSanitizer+UBSan and ThreadSanitizer, then the HTTP
# end-to-end suite against the real `stub` binary. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

# The sanitizer builds cover the core, store and engine suites; STUB_SANITIZERS=0 skips them.
sanitizers=${STUB_SANITIZERS:-1}

echo "== release build"
cmake --preset release >/dev/null
cmake --build --preset release
echo "== C++ suites (release)"
ctest --preset release --output-on-failure

if [[ "$sanitizers" == 1 ]]; then
  for preset in asan tsan; do
    echo "== C++ suites ($preset)"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset" --target stub_unit_tests stub_property_tests stub_store_tests
    TSAN_OPTIONS="halt_on_error=1" ASAN_OPTIONS="detect_leaks=1" \
      ctest --preset "$preset" --output-on-failure
  done
fi

echo "== HTTP end-to-end suite"
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
STUB_BIN="$PWD/build/release/src/stub" .venv/bin/python -m pytest -q tests/e2e
