-- The free plan's monthly allowance sweep: one row per calendar month (UTC, `YYYY-MM`), with
-- the last account granted so far (accounts are swept in the order of their ids in the event
-- store) and when the month was done. Not a read model: it is the sweep's own progress, so a
-- restart resumes it.
CREATE TABLE allowance_sweeps
(
    period       text PRIMARY KEY,
    last_account text,
    finished_at  timestamptz
);
