#!/usr/bin/env bash
# tools/cluster end to end: it starts ZooKeeper, ClickHouse as 2 shards x 2 replicas, 2 devmesh
# aggregators and HAProxy; every piece is healthy; a ReplicatedMergeTree table made ON CLUSTER
# and filled through its Distributed table is split over both shards and copied to both replicas
# of each; records posted to HAProxy reach ClickHouse through both aggregators; HAProxy stops
# sending to a killed aggregator and takes it back once restarted; a killed replica catches up
# once restarted; stop leaves no process behind. Then the same with --store mariadb (1 aggregator).
# Usage: cluster_test.sh SOURCE_DIR DEVMESH_BIN PLUGINS_DIR WORK_DIR (ctest: label "cluster").
set -euo pipefail

src=$1
devmesh=$2
plugins=$3
work=$4
dir=$work/cluster
cluster() { "$src/tools/cluster" "$@" --dir "$dir"; }
fail=0
check() {  # check "what" command...: runs the command, reports, remembers a failure
  local what=$1
  shift
  if "$@"; then
    echo "ok (${SECONDS}s): $what"
  else
    echo "FAILED: $what" >&2
    fail=1
  fi
}
# wait_for SECONDS command...: true once command succeeds, false after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

ours() {  # the processes whose command line names the cluster's directory
  local p
  for p in /proc/[0-9]*; do
    tr "\0" " " 2>/dev/null <"$p/cmdline" | grep -qF "$dir/" && echo "${p#/proc/}"
  done
  return 0
}
finish() {
  cluster stop >/dev/null 2>&1 || true
  # Whatever a failed stop left is not to outlive the test.
  local p
  for p in $(ours); do kill -KILL "$p" 2>/dev/null || true; done
}
trap finish EXIT

mkdir -p "$work"
[ -f "$dir/cluster.env" ] && cluster stop >/dev/null 2>&1 || true
rm -rf "$dir"

# ---- start ----------------------------------------------------------------------------------
if ! cluster start --aggregators 2 --devmesh "$devmesh" --plugins-dir "$plugins"; then
  echo "FAILED: tools/cluster start" >&2
  exit 1
fi
# shellcheck disable=SC1091
. "$dir/endpoints.env"
replicas=(S1R1 S1R2 S2R1 S2R2)
url_of() { local v="CLICKHOUSE_$1_URL"; printf '%s' "${!v}"; }
tcp_of() { local v="CLICKHOUSE_$1_TCP_PORT"; printf '%s' "${!v}"; }
q() { curl -sf --max-time 30 "$(url_of "$1")" --data-binary "$2"; }

check "endpoints.env names HAProxy's ingest address and every ClickHouse HTTP port" \
  test -n "$DEVMESH_INGEST_URL" -a -n "$CLICKHOUSE_S1R1_URL" -a -n "$CLICKHOUSE_S1R2_URL" \
  -a -n "$CLICKHOUSE_S2R1_URL" -a -n "$CLICKHOUSE_S2R2_URL"
check "status shows every piece running" cluster status

# ---- every piece healthy --------------------------------------------------------------------
zk_mode() {
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && printf srvr >&3 && cat <&3' \
    "${ZOOKEEPER#*:}" | grep '^Mode:'
}
check "ZooKeeper serves, standalone" test "$(zk_mode)" = "Mode: standalone"
zk_session() { q "$1" "SELECT count() FROM system.zookeeper WHERE path = '/clickhouse'" >/dev/null; }
for r in "${replicas[@]}"; do
  check "ClickHouse $r answers /ping" test "$(curl -sf "$(url_of "$r")ping")" = "Ok."
  check "ClickHouse $r sees cluster devmesh as 2 shards x 2 replicas" test \
    "$(q "$r" "SELECT count(), uniqExact(shard_num), max(replica_num) FROM system.clusters
               WHERE cluster = 'devmesh'")" = $'4\t2\t2'
  check "ClickHouse $r has a ZooKeeper session" zk_session "$r"
done
for i in 1 2; do
  v="AGGREGATOR_${i}_HTTP_URL"
  check "aggregator $i's /health is 200" curl -sf -o /dev/null "${!v}/health"
done
stat_of() {  # stat_of BACKEND SERVER: its status on HAProxy's statistics page
  curl -sf "$HAPROXY_STATS_URL;csv" | awk -F, -v b="$1" -v s="$2" '$1 == b && $2 == s { print $18 }'
}
check "HAProxy sees both aggregators UP" \
  test "$(stat_of aggregators aggregator-1) $(stat_of aggregators aggregator-2)" = "UP UP"

# ---- the Distributed table shards, ReplicatedMergeTree replicates ---------------------------
clickhouse-client --host 127.0.0.1 --port "$(tcp_of S1R1)" --multiquery >/dev/null <<'SQL'
CREATE TABLE IF NOT EXISTS default.probe ON CLUSTER devmesh (id UInt64, note String)
  ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/default/probe', '{replica}')
  ORDER BY id;
CREATE TABLE IF NOT EXISTS default.probe_all ON CLUSTER devmesh AS default.probe
  ENGINE = Distributed(devmesh, default, probe, id);
SQL
# insert_distributed_sync: the insert returns once both shards have their part.
clickhouse-client --host 127.0.0.1 --port "$(tcp_of S2R2)" --insert_distributed_sync=1 \
  --query "INSERT INTO default.probe_all SELECT number, 'row' FROM system.numbers LIMIT 1000"
probe_rows_are() { [ "$(q "$1" "SELECT count() FROM default.probe_all")" = "$2" ]; }
local_count() { q "$1" "SELECT count() FROM default.probe"; }
replicas_agree() {  # both replicas of each shard hold the same rows
  [ "$(local_count S1R1)" = "$(local_count S1R2)" ] &&
    [ "$(local_count S2R1)" = "$(local_count S2R2)" ]
}
check "each shard's replicas hold the same rows (replication)" wait_for 30 replicas_agree
echo "probe rows: shard 1 $(local_count S1R1), shard 2 $(local_count S2R1)"
check "both shards hold part of the rows (sharding)" \
  test "$(local_count S1R1)" -gt 0 -a "$(local_count S2R1)" -gt 0
check "the shards' rows add up to every row inserted" \
  test $(($(local_count S1R1) + $(local_count S2R1))) -eq 1000
for r in "${replicas[@]}"; do
  check "every row reads back through the Distributed table on $r" \
    test "$(q "$r" "SELECT count(), uniqExact(id) FROM default.probe_all")" = $'1000\t1000'
done

# ---- records through HAProxy, both aggregators, into the cluster ---------------------------
sent=0
post() {  # post N: one request of N records (numbered from $sent) through HAProxy; its status
  local n=$1 body i
  body='{"logs":['
  for ((i = 0; i < n; i++)); do
    ((i)) && body+=','
    body+="{\"service\":\"cluster-test\",\"level\":\"INFO\",\"message\":\"record $((sent + i))\"}"
  done
  body+=']}'
  curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "$body" "$DEVMESH_INGEST_URL"
}
posts_ok() {  # posts_ok REQUESTS: that many requests of 10 records, all answered 200
  local k code
  for ((k = 0; k < $1; k++)); do
    code=$(post 10)
    sent=$((sent + 10))  # a request not answered 200 may still have been stored: counted
    [ "$code" = 200 ] || {
      echo "request $k answered $code" >&2
      return 1
    }
  done
}
served() {  # served I: requests aggregator I answered 200
  local v="AGGREGATOR_$1_HTTP_URL"
  curl -sf "${!v}/metrics" |
    awk '/^devmesh_http_requests_total\{.*status="200"/ { s += $NF } END { print s + 0 }'
}
check "20 requests through HAProxy are all answered 200" posts_ok 20
check "HAProxy sent requests to both aggregators" test "$(served 1)" -gt 0 -a "$(served 2)" -gt 0
# FINAL: a record an aggregator sent twice (a retry) is one row (ReplacingMergeTree on event_id).
stored() { q S1R1 "SELECT count(), uniqExact(event_id) FROM $CLUSTER_TABLE FINAL"; }
all_stored() { [ "$(stored)" = "$sent"$'\t'"$sent" ]; }
check "every record posted is in ClickHouse once (count, distinct event_id)" \
  wait_for 30 all_stored

# ---- HAProxy drops a killed aggregator and takes it back ------------------------------------
cluster kill-aggregator 1
check "HAProxy marks the killed aggregator DOWN" \
  wait_for 30 bash -c "curl -sf '$HAPROXY_STATS_URL;csv' | grep -q '^aggregators,aggregator-1,.*,DOWN'"
before=$(served 2)
check "with aggregator 1 down, 10 requests are all answered 200" posts_ok 10
check "aggregator 2 answered all of them" test $(($(served 2) - before)) -eq 10
cluster restart aggregator 1
check "HAProxy takes the restarted aggregator back (UP)" \
  test "$(stat_of aggregators aggregator-1)" = UP
check "10 more requests are all answered 200" posts_ok 10
check "the restarted aggregator serves requests again" test "$(served 1)" -gt 0

# ---- a killed replica catches up once restarted ---------------------------------------------
cluster kill-replica 2 1
check "with replica 2 1 down, 5 requests are all answered 200" posts_ok 5
clickhouse-client --host 127.0.0.1 --port "$(tcp_of S1R1)" --insert_distributed_sync=1 \
  --query "INSERT INTO default.probe_all SELECT number, 'more' FROM system.numbers
           WHERE number >= 1000 LIMIT 1000"
cluster restart replica 2 1
check "the restarted replica catches up with its shard" wait_for 60 replicas_agree
check "every row reads back on the restarted replica" \
  wait_for 30 probe_rows_are S2R1 2000
check "records posted while it was down are in ClickHouse once" \
  wait_for 30 all_stored

# ---- stop -----------------------------------------------------------------------------------
check "stop stops every piece" cluster stop
check "no process of the cluster is left" test -z "$(ours)"
check "status then shows every piece stopped" bash -c "! '$src/tools/cluster' status --dir '$dir'"

# ---- --store mariadb: one aggregator into one MariaDB (the single-node comparison) ------------
dir=$work/mariadb
[ -f "$dir/cluster.env" ] && cluster stop >/dev/null 2>&1 || true
rm -rf "$dir"
if cluster start --store mariadb --aggregators 1 --devmesh "$devmesh" --plugins-dir "$plugins" \
  >/dev/null; then
  # shellcheck disable=SC1091
  . "$dir/endpoints.env"
  sent=0
  check "with --store mariadb, 5 requests through HAProxy are all answered 200" posts_ok 5
  rows() {
    mariadb --no-defaults --protocol=socket --socket="$MARIADB_SOCKET" --user=root -N \
      -e "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM devmesh.log_events"
  }
  check "every record is in MariaDB once (ack: delivered: committed before the 200)" \
    test "$(rows)" = "50"$'\t'50
  check "stop stops MariaDB, the aggregator and HAProxy" cluster stop
  check "no process of that cluster is left" test -z "$(ours)"
else
  echo "FAILED: tools/cluster start --store mariadb" >&2
  fail=1
fi
exit $fail
