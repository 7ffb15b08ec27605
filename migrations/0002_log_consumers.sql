-- Where each reader of the global log stands. Positions are (tx_id, global_position) pairs:
-- the commit-safe order of the log.

-- The relay's checkpoint: the last event whose PubAck came back from JetStream.
CREATE TABLE relay_checkpoints
(
    relay           text PRIMARY KEY,
    tx_id           xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Each projection's checkpoint, written in the same transaction as its row changes.
CREATE TABLE projection_checkpoints
(
    projection      text PRIMARY KEY,
    tx_id           xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The last sequence each projection applied per aggregate: re-delivered events at or below it
-- are skipped, and a gap above it is filled from the event store before applying.
CREATE TABLE projection_aggregate_sequences
(
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);
