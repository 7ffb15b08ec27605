-- Where each durable reader of the log inside a process stands (the settlement of a deployment
-- without NATS, which follows the log itself instead of JetStream consumers): the last event
-- it has done with, in the log's commit-safe order.
CREATE TABLE consumer_checkpoints
(
    consumer        text PRIMARY KEY,
    tx_id           xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
