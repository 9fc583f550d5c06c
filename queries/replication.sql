-- Read replicas: where the primary's WAL is, and how far a replica has replayed it. The
-- services compare the two to route a read that follows a write (read-your-writes) and to
-- skip a replica that lags too far behind.

-- name: get_wal_position()$
-- The primary's WAL insert position as text (a pg_lsn): once a commit has returned, its
-- commit record lies at or before this point, so a replica that has replayed up to here
-- sees the commit.
SELECT pg_current_wal_insert_lsn()::text;

-- name: get_replica_status()^
-- Whether this server is a standby, the WAL position it has replayed up to (its own insert
-- position when it is not a standby), and how many milliseconds its data lags: 0 when it
-- has replayed everything it received, else the age of the last transaction it replayed.
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
            ELSE pg_current_wal_insert_lsn() END::text AS replayed_lsn,
       CASE WHEN NOT pg_is_in_recovery()
                 OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
            THEN 0.0
            ELSE extract(epoch FROM clock_timestamp() - coalesce(
                     pg_last_xact_replay_timestamp(), pg_postmaster_start_time())) * 1000
       END::float8 AS lag_ms;
