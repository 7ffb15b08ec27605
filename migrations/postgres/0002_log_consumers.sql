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
