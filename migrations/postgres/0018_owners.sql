-- Resources owned by organisations. A project, video, job or ledger row's `owner_id` is its
-- owner's id: a user's, or an organisation's (`owner_kind = 'organization'`). Who made it is
-- kept beside: the member who created the project, uploaded the video or requested the job
-- (NULL on rows from before organisations: the owner did).
ALTER TABLE project_list ADD COLUMN owner_kind text NOT NULL DEFAULT 'user'
    CHECK (owner_kind IN ('user', 'organization'));
ALTER TABLE project_list ADD COLUMN created_by uuid;

ALTER TABLE asset_list ADD COLUMN uploaded_by uuid;

ALTER TABLE job_list ADD COLUMN owner_kind text NOT NULL DEFAULT 'user'
    CHECK (owner_kind IN ('user', 'organization'));
ALTER TABLE job_list ADD COLUMN requested_by uuid;

-- On an organisation's ledger, the member whose job a reservation, settlement or release is
-- for, and the month (`YYYY-MM`, UTC, of the reservation) it counts towards their limit: what
-- the usage per member per month is summed from.
ALTER TABLE credit_transactions ADD COLUMN member_id uuid;
ALTER TABLE credit_transactions ADD COLUMN period text;
-- A settlement or release finds its reservation's member by the job and run. Only members'
-- reservations are indexed: a user's own reservations (most of them) cost no index entry.
CREATE INDEX credit_transactions_member_reservation ON credit_transactions (owner_id, job_id, job_run)
    WHERE kind = 'reservation' AND member_id IS NOT NULL;
CREATE INDEX credit_transactions_member_usage ON credit_transactions (owner_id, period, member_id)
    WHERE member_id IS NOT NULL;

-- A Stripe customer is a user's or an organisation's (`user_id` holds the owner's id; the
-- column keeps its name for the rows and readers that came before organisations).
ALTER TABLE stripe_customers ADD COLUMN owner_kind text NOT NULL DEFAULT 'user'
    CHECK (owner_kind IN ('user', 'organization'));
