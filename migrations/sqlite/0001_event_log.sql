-- The event store of the embedded database: every change in Keyframe is a row here; everything
-- else is derived from it. The same columns as Postgres's `events`, with SQLite's types:
-- JSON as text, times as RFC 3339 text in UTC (written by Keyframe, so they sort as times).
--
-- One connection writes at a time, so positions are handed out and become visible in order:
-- a reader that has seen position n has seen everything before it, and the log is read by
-- position alone (Postgres needs a commit fence for that, see `migrations/postgres/0014`).
-- `tx_id` numbers the appends (every event of one append shares it), so an export says which
-- events committed together, as it does from Postgres.
CREATE TABLE events
(
    global_position INTEGER PRIMARY KEY,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        INTEGER NOT NULL CHECK (sequence >= 0),
    event_type      TEXT    NOT NULL,
    event_version   TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    tx_id           INTEGER NOT NULL,
    recorded_at     TEXT    NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_recorded_at ON events (recorded_at);

-- Each read model's checkpoint, written in the same transaction as its row changes.
CREATE TABLE projection_checkpoints
(
    projection      TEXT PRIMARY KEY,
    tx_id           INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    updated_at      TEXT    NOT NULL
);
