-- The relay is no longer woken by a trigger on `events`.
--
-- A transaction that calls NOTIFY takes a database-wide lock at commit and holds it through its
-- WAL flush, so every append committed one at a time: on the 2-core reference machine, single-row
-- inserts into a table with such a trigger ran at 5,100/s against 23,400/s without it (pgbench,
-- 32 clients). Keyframe's event repository now sends the wake-up itself after its append has
-- committed, coalesced to one NOTIFY in flight; writers that bypass it are found by the relay's
-- polling.
DROP TRIGGER events_appended ON events;
DROP FUNCTION notify_events_appended();
