-- Which run of its job a reservation, settlement or release belongs to (a manual retry of a
-- job is a new run with a reservation of its own). Rows written before this column are NULL
-- until the projection is rebuilt (`keyframe replay --projection credit_transactions`).
ALTER TABLE credit_transactions ADD COLUMN job_run integer;
