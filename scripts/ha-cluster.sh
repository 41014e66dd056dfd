#!/usr/bin/env bash
# A highly available PostgreSQL cluster on this machine, for the fault suite and for trying Stub
# on one: three PostgreSQL 15 nodes run by Debian's Patroni, one etcd (the DCS), synchronous
# replication (synchronous_mode: true, so a commit is acknowledged only once a standby has it).
#
#   scripts/ha-cluster.sh start DIR           bring it up in DIR; the LAST line printed is the
#                                             libpq URL that reaches the primary:
#                                             postgresql://postgres@h:p1,h:p2,h:p3/postgres?target_session_attrs=read-write
#   scripts/ha-cluster.sh stop DIR            stop everything started in DIR (the caller removes DIR)
#   scripts/ha-cluster.sh failover DIR        a Patroni switchover to a synchronous standby;
#                                             waits until the new primary takes writes
#   scripts/ha-cluster.sh failover DIR --kill kill -9 the primary's postmaster (Patroni then
#                                             recovers: restarts it, or promotes a standby)
#   scripts/ha-cluster.sh leader DIR          the current primary's name and port
#
# Everything listens on 127.0.0.1 only and trusts local users; this is a test rig, not a
# production setup (docs/postgres.md says what production needs). Ports are picked free.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [[ -z "$command" || -z "$dir" ]]; then
  echo "usage: $0 start|stop|failover|leader DIR [--kill]" >&2
  exit 2
fi
nodes=(n1 n2 n3)
bindir=/usr/lib/postgresql/15/bin

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster's state from any node's REST API, as JSON (patroni's /cluster).
cluster_json() {
  local port
  for node in "${nodes[@]}"; do
    port=$(cat "$dir/$node/rest.port")
    if curl -sf -m 2 "http://127.0.0.1:$port/cluster"; then return 0; fi
  done
  return 1
}

# Prints "NAME PGPORT" of the leader once it runs and a synchronous standby streams.
leader_ready() {
  cluster_json | python3 -c '
import json, sys
members = json.load(sys.stdin)["members"]
leader = [m for m in members if m["role"] == "leader" and m["state"] == "running"]
sync = [m for m in members if m["role"] == "sync_standby" and m["state"] in ("running", "streaming")]
if leader and sync:
    print(leader[0]["name"], leader[0]["port"])
else:
    sys.exit(1)'
}

# Waits (up to $1 seconds) until the leader answers a write through the multi-host URL.
await_writes() {
  local deadline=$((SECONDS + $1))
  while ((SECONDS < deadline)); do
    if leader_ready >/dev/null 2>&1 &&
      psql "$(cat "$dir/url")" -qAtc 'CREATE TABLE IF NOT EXISTS ha_probe (x int); INSERT INTO ha_probe VALUES (1)' \
        >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  echo "ha-cluster: no writable primary within $1 s" >&2
  cluster_json >&2 || true
  return 1
}

case "$command" in
  start)
    if ! command -v patroni >/dev/null || ! command -v etcd >/dev/null || [[ ! -x $bindir/postgres ]]; then
      echo "ha-cluster: needs patroni, etcd-server and postgresql-15 (scripts/install-deps.sh)" >&2
      exit 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -w "$dir" -o -O "$dir" 2>/dev/null &&
      ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
      echo "ha-cluster: the postgres user cannot reach $dir (a parent directory is private)" >&2
      exit 1
    fi
    etcd_client=$(free_port)
    etcd_peer=$(free_port)
    echo "$etcd_client" >"$dir/etcd.port"
    nohup etcd --name ha --data-dir "$dir/etcd" \
      --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
      --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
      --initial-cluster "ha=http://127.0.0.1:$etcd_peer" >"$dir/etcd.log" 2>&1 &
    echo $! >"$dir/etcd.pid"
    hosts=()
    for node in "${nodes[@]}"; do
      mkdir -p "$dir/$node"
      pg_port=$(free_port)
      rest_port=$(free_port)
      echo "$pg_port" >"$dir/$node/pg.port"
      echo "$rest_port" >"$dir/$node/rest.port"
      hosts+=("127.0.0.1:$pg_port")
      # ttl/loop_wait/retry_timeout: a dead primary's leader key lapses within ttl (20 s, the
      # least Patroni allows with loop_wait 5); the fault suite's bounds follow from these.
      cat >"$dir/$node/patroni.yml" <<YML
scope: stub-ha
name: $node
log:
  dir: $dir/$node
  level: WARNING
restapi:
  listen: 127.0.0.1:$rest_port
  connect_address: 127.0.0.1:$rest_port
etcd3:
  hosts: 127.0.0.1:$etcd_client
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 5
    retry_timeout: 5
    maximum_lag_on_failover: 0
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 400
        shared_buffers: 256MB
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        synchronous_commit: "on"
        fsync: "on"
        log_min_messages: warning
  initdb:
    - encoding: UTF8
    - locale: C
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $dir/$node/data
  bin_dir: $bindir
  pgpass: $dir/$node/pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: replicator
  parameters:
    unix_socket_directories: '$dir/$node'
YML
    done
    IFS=,
    echo "postgresql://postgres@${hosts[*]}/postgres?target_session_attrs=read-write" >"$dir/url"
    unset IFS
    if [[ $(id -u) -eq 0 ]]; then chown -R postgres: "$dir"; fi
    for node in "${nodes[@]}"; do
      # Patroni's own pid (not runuser's), so that stop reaches it.
      as_postgres bash -c 'echo $$ >"$1/patroni.pid"; exec patroni "$1/patroni.yml" >"$1/patroni.out" 2>&1' \
        _ "$dir/$node" </dev/null >/dev/null 2>&1 &
      sleep 1 # the first node bootstraps alone; the others clone from it
    done
    await_writes 120
    cat "$dir/url"
    ;;
  stop)
    for node in "${nodes[@]}"; do
      if [[ -f $dir/$node/patroni.pid ]]; then kill "$(cat "$dir/$node/patroni.pid")" 2>/dev/null || true; fi
    done
    for node in "${nodes[@]}"; do
      pidfile=$dir/$node/patroni.pid
      [[ -f $pidfile ]] || continue
      for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$(cat "$pidfile")" 2>/dev/null || true
      if [[ -f $dir/$node/data/postmaster.pid ]]; then
        as_postgres "$bindir/pg_ctl" -D "$dir/$node/data" -m immediate stop >/dev/null 2>&1 || true
      fi
    done
    if [[ -f $dir/etcd.pid ]]; then
      etcd_pid=$(cat "$dir/etcd.pid")
      kill "$etcd_pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$etcd_pid" 2>/dev/null || break; sleep 0.1; done
    fi
    ;;
  leader)
    leader_ready
    ;;
  failover)
    read -r leader _ < <(leader_ready)
    if [[ ${3:-} == --kill ]]; then
      postmaster=$(head -n 1 "$dir/$leader/data/postmaster.pid")
      kill -9 "$postmaster"
      echo "ha-cluster: killed the postmaster ($postmaster) of $leader" >&2
    else
      patronictl -c "$dir/$leader/patroni.yml" switchover --leader "$leader" --force >"$dir/switchover.log" 2>&1 || {
        cat "$dir/switchover.log" >&2
        exit 1
      }
      echo "ha-cluster: switched over from $leader" >&2
    fi
    await_writes 90
    leader_ready
    ;;
  *)
    echo "usage: $0 start|stop|failover|leader DIR [--kill]" >&2
    exit 2
    ;;
esac
