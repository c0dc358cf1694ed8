-- The tables output-clickhouse-http.yaml.in writes: logs on every server (ReplicatedMergeTree,
-- one copy per replica, replaced by event_id), logs_all over the 2 shards (Distributed, sharded
-- by event_id so a record sent twice lands on the same shard and is replaced there).
CREATE DATABASE IF NOT EXISTS devmesh ON CLUSTER devmesh;
CREATE TABLE IF NOT EXISTS devmesh.logs ON CLUSTER devmesh (
    timestamp String,
    source String,
    service String,
    host String,
    level String,
    message String,
    event_id String,
    received DateTime DEFAULT now()
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/devmesh/logs', '{replica}')
PARTITION BY toYYYYMMDD(received)
ORDER BY (service, event_id);
CREATE TABLE IF NOT EXISTS devmesh.logs_all ON CLUSTER devmesh AS devmesh.logs
ENGINE = Distributed(devmesh, devmesh, logs, sipHash64(event_id));
