-- Where each durable reader of the log inside the process stands (the settlement, which follows
-- the log itself): the last event it has done with (see `migrations/postgres/0019`).
CREATE TABLE consumer_checkpoints
(
    consumer        TEXT PRIMARY KEY,
    tx_id           INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    updated_at      TEXT    NOT NULL
);
