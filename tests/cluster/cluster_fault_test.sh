#!/usr/bin/env bash
# Issue 15's fault test over tools/cluster: 2 sidecars (numbered dummy records -> http_forward)
# -> HAProxy -> 2 aggregators (http, ack: delivered) -> ClickHouse 2 shards x 2 replicas. Mid-stream
# (by rows stored, not by time), aggregator 1 and then ClickHouse shard 2 replica 1 are killed
# with SIGKILL, then both are restarted. In the end every record is in ClickHouse exactly once:
# by count (read with FINAL: a record sent again after a kill is one row) and by distinct
# event_id, each numbered record present, none dead-lettered: read through ClickHouse directly,
# and through the query plugin (/query/stats via HAProxy). The aggregators' output is tools/cluster's
# default: the clickhouse output, with the query plugin on ClickHouse.
# Usage: cluster_fault_test.sh SOURCE_DIR DEVMESH_BIN PLUGINS_DIR WORK_DIR [RECORDS_PER_SIDECAR]
set -euo pipefail

src=$1
devmesh=$2
plugins=$3
work=$4
per_sidecar=${5:-${DEVMESH_FAULT_CLUSTER_RECORDS:-50000}}
total=$((2 * per_sidecar))
dir=$work/fault
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
wait_for() {  # wait_for SECONDS command...: true once command succeeds, false after SECONDS
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
ours() {
  local p
  for p in /proc/[0-9]*; do
    tr "\0" " " 2>/dev/null <"$p/cmdline" | grep -qF "$dir/" && echo "${p#/proc/}"
  done
  return 0
}
finish() {
  cluster stop >/dev/null 2>&1 || true
  local p
  for p in $(ours); do kill -KILL "$p" 2>/dev/null || true; done
}
trap finish EXIT

mkdir -p "$work"
[ -f "$dir/cluster.env" ] && cluster stop >/dev/null 2>&1 || true
rm -rf "$dir"
cluster start --aggregators 2 --devmesh "$devmesh" --plugins-dir "$plugins" >/dev/null || {
  echo "FAILED: tools/cluster start" >&2
  exit 1
}
# shellcheck disable=SC1091
. "$dir/endpoints.env"
q() { curl -sf --max-time 30 "$CLICKHOUSE_S1R1_URL" --data-binary "$1"; }
rows() { q "SELECT count() FROM $CLUSTER_TABLE" || echo 0; }
rows_at_least() { (($(rows) >= $1)); }

# ---- the sidecars -----------------------------------------------------------------------------
mkdir -p "$dir/sidecars"
for i in 1 2; do
  cat >"$dir/sidecars/sidecar-$i.yaml" <<YAML
service:
  exit_when_done: true
  grace: 5s
  plugins_dir: $plugins
pipeline:
  inputs:
    - name: dummy
      rate: 5000
      batch: 500
      count: $per_sidecar
      start: $((i * 1000000))   # record N's event_id is made from N: distinct per sidecar
      service: sidecar-$i
      message: 'sidecar $i record {seq}'
  outputs:
    - name: http_forward
      match: '*'
      url: $DEVMESH_INGEST_URL
      timeout: 10s
      dead_letter_path: $dir/sidecars/dead-letter-$i.ndjson
YAML
  "$devmesh" -c "$dir/sidecars/sidecar-$i.yaml" >"$dir/sidecars/sidecar-$i.log" 2>&1 &
  eval "sidecar_$i=\$!"
done

# ---- the faults, by rows stored ---------------------------------------------------------------
check "a fifth of the records are stored" wait_for 120 rows_at_least $((total / 5))
cluster kill-aggregator 1
echo "aggregator 1 killed at $(rows) rows"
check "HAProxy marks the killed aggregator DOWN" wait_for 30 bash -c \
  "curl -sf '$HAPROXY_STATS_URL;csv' | grep -q '^aggregators,aggregator-1,.*,DOWN'"
check "two fifths of the records are stored with aggregator 1 down" \
  wait_for 120 rows_at_least $((2 * total / 5))
cluster kill-replica 2 1
echo "ClickHouse shard 2 replica 1 killed at $(rows) rows"
check "half of the records are stored with replica 2 1 down" \
  wait_for 120 rows_at_least $((total / 2))
cluster restart aggregator 1
cluster restart replica 2 1
echo "both restarted at $(rows) rows"

# ---- every record exactly once ----------------------------------------------------------------
for i in 1 2; do
  pid_var="sidecar_$i"
  code=0
  wait "${!pid_var}" || code=$?
  check "sidecar $i delivered every record and exited 0" test "$code" = 0
  check "sidecar $i dead-lettered nothing" test ! -e "$dir/sidecars/dead-letter-$i.ndjson"
done
once() {
  [ "$(q "SELECT count(), uniqExact(event_id), uniqExact(service, message)
          FROM $CLUSTER_TABLE FINAL")" = "$total"$'\t'"$total"$'\t'"$total" ]
}
check "every record is in ClickHouse once (count with FINAL, distinct event_id, each number)" \
  wait_for 90 once
echo "rows: $(q "SELECT count(), uniqExact(event_id) FROM $CLUSTER_TABLE FINAL" | tr '\t' ' ')" \
  "(count, distinct event_id) of $total; before FINAL: $(rows) (records sent again)"
# Through the query plugin too: /query/stats through HAProxy reads the Distributed table.
stats=$(curl -sf "${DEVMESH_INGEST_URL%/ingest/logs}/query/stats?since=1h" || true)
echo "query stats: $stats"
check "the query API counts every record once" grep -q "\"total\":$total[,}]" <<<"$stats"
check "the query API counts each sidecar's records once" \
  grep -q "\"sidecar-1\":$per_sidecar[,}].*\"sidecar-2\":$per_sidecar[,}]\|\"sidecar-2\":$per_sidecar[,}].*\"sidecar-1\":$per_sidecar[,}]" <<<"$stats"
replicas_agree() {
  local a b
  a=$(curl -sf "$CLICKHOUSE_S2R1_URL" --data-binary "SELECT count() FROM $CLUSTER_LOCAL_TABLE FINAL")
  b=$(curl -sf "$CLICKHOUSE_S2R2_URL" --data-binary "SELECT count() FROM $CLUSTER_LOCAL_TABLE FINAL")
  [ -n "$a" ] && [ "$a" = "$b" ]
}
check "the restarted replica holds what its shard holds" wait_for 60 replicas_agree
for i in 1 2; do
  check "aggregator $i dead-lettered nothing" test ! -e "$dir/aggregator-$i/dead-letter.ndjson"
done

check "stop stops every piece" cluster stop
check "no process of the cluster is left" test -z "$(ours)"
exit $fail
