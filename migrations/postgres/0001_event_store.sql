-- The event store: the postgres-es `events` schema, extended for a gap-free global log.
-- Every change in Keyframe is a row here; everything else is derived from it.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- Handed out at insert, visible at commit: never read alone as a cursor (see tx_id).
    global_position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    -- The writing transaction; readers only go below pg_snapshot_xmin so late commits are never skipped.
    tx_id           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_commit_order ON events (tx_id, global_position);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- Wakes the relay when events commit (NOTIFY is delivered at commit, once per transaction
-- and channel). The relay polls as well, so a lost notification only delays it.
CREATE FUNCTION notify_events_appended() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('keyframe_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION notify_events_appended();
