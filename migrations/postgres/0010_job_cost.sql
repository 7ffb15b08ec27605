-- What a job costs: its price in credits, reserved when it was requested. The job list shows
-- it, and 0 for a failed or cancelled job (its reservation is released). NULL for jobs
-- requested before billing.
ALTER TABLE job_list ADD COLUMN cost_credits bigint;
