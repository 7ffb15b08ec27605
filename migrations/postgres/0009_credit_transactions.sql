-- Read model: every movement of a user's credits, newest first by the ledger's sequence.
CREATE TABLE credit_transactions
(
    owner_id    uuid        NOT NULL,
    -- The CreditLedger aggregate's sequence of the event (the ledger's id is the owner's).
    sequence    bigint      NOT NULL,
    kind        text        NOT NULL,
    -- The change to the balance (grants and refunds +, settlements -; reservations and
    -- releases leave the balance and change what is reserved).
    amount      bigint      NOT NULL,
    reserved    bigint      NOT NULL DEFAULT 0,
    balance     bigint,
    job_id      uuid,
    reference   text,
    reason      text,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (owner_id, sequence)
);
