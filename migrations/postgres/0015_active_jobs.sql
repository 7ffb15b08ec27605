-- `/metrics` counts the jobs waiting and running on every scrape: an index over only those
-- keeps that count small however many jobs have finished.
CREATE INDEX job_list_active ON job_list (status) WHERE status IN ('queued', 'running') AND deleted_at IS NULL;
