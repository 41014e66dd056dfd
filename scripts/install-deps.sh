#!/usr/bin/env bash
# Installs the Debian packages that building and testing Stub needs. Idempotent: it only calls
# apt-get when a package is missing, so it costs nothing on a machine that already has them.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang-format clang-14 libclang-rt-14-dev
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev sqlite3 libpq-dev postgresql libssl-dev
  libcli11-dev libspdlog-dev libfmt-dev prometheus-cpp-dev
  libgtest-dev librapidcheck-dev libbenchmark-dev hledger
  curl python3
  patroni etcd-server  # the fault suite's 3-node PostgreSQL HA cluster (scripts/ha-cluster.sh)
  chromium  # the dashboard's browser tests (playwright-core drives it; no browser download)
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The TypeScript SDK (and the dashboard) build with Node (>= 18) and npm. Machines of this
# kind ship Node 20; where it is missing, Debian's own nodejs and npm are enough.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing nodejs npm"
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends nodejs npm
fi
