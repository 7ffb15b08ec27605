-- The read models and the other tables of the embedded database: the same tables and columns
-- as Postgres's (`migrations/postgres/0003` to `0018`), with SQLite's types. UUIDs are 16-byte
-- blobs, times RFC 3339 text in UTC (written by Keyframe, so they sort as times), booleans
-- integers, arrays JSON text. Partial indexes as on Postgres.

-- An address is claimed before its registration is appended (see `email_reservations` there).
CREATE TABLE email_reservations
(
    email       TEXT PRIMARY KEY,
    user_id     BLOB NOT NULL UNIQUE,
    reserved_at TEXT NOT NULL
);

CREATE TABLE project_list
(
    project_id    BLOB PRIMARY KEY,
    owner_id      BLOB    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    deleted_at    TEXT,
    last_sequence INTEGER NOT NULL,
    owner_kind    TEXT    NOT NULL DEFAULT 'user' CHECK (owner_kind IN ('user', 'organization')),
    created_by    BLOB
);

CREATE INDEX project_list_owner ON project_list (owner_id, project_id DESC) WHERE deleted_at IS NULL;

CREATE TABLE session_list
(
    session_id         BLOB PRIMARY KEY,
    user_id            BLOB    NOT NULL,
    user_agent         TEXT,
    ip                 TEXT,
    created_at         TEXT    NOT NULL,
    last_used_at       TEXT    NOT NULL,
    refresh_expires_at TEXT    NOT NULL,
    ended_at           TEXT,
    end_reason         TEXT,
    last_sequence      INTEGER NOT NULL
);

CREATE INDEX session_list_user_active ON session_list (user_id, session_id DESC) WHERE ended_at IS NULL;

CREATE TABLE user_directory
(
    user_id          BLOB PRIMARY KEY,
    email            TEXT    NOT NULL,
    full_name        TEXT,
    -- A JSON array of role names.
    roles            TEXT    NOT NULL,
    email_verified   INTEGER NOT NULL DEFAULT 0,
    two_factor       INTEGER NOT NULL DEFAULT 0,
    suspended_reason TEXT,
    created_at       TEXT    NOT NULL,
    last_sequence    INTEGER NOT NULL
);

CREATE INDEX user_directory_email ON user_directory (email);

CREATE TABLE asset_list
(
    asset_id      BLOB PRIMARY KEY,
    owner_id      BLOB    NOT NULL,
    project_id    BLOB    NOT NULL,
    filename      TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    duration_ms   INTEGER,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    video_codec   TEXT    NOT NULL,
    audio_codec   TEXT,
    uploaded_at   TEXT    NOT NULL,
    released_at   TEXT,
    last_sequence INTEGER NOT NULL,
    uploaded_by   BLOB
);

CREATE INDEX asset_list_project ON asset_list (project_id, asset_id DESC) WHERE released_at IS NULL;
CREATE INDEX asset_list_owner ON asset_list (owner_id);

CREATE TABLE job_list
(
    job_id        BLOB PRIMARY KEY,
    owner_id      BLOB    NOT NULL,
    project_id    BLOB    NOT NULL,
    job_type      TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    progress      INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_retries   INTEGER NOT NULL,
    asset_id      BLOB,
    error         TEXT,
    created_at    TEXT    NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    updated_at    TEXT    NOT NULL,
    deleted_at    TEXT,
    last_sequence INTEGER NOT NULL,
    cost_credits  INTEGER,
    owner_kind    TEXT    NOT NULL DEFAULT 'user' CHECK (owner_kind IN ('user', 'organization')),
    requested_by  BLOB
);

CREATE INDEX job_list_owner ON job_list (owner_id, job_id DESC) WHERE deleted_at IS NULL;
CREATE INDEX job_list_active ON job_list (status) WHERE status IN ('queued', 'running') AND deleted_at IS NULL;

CREATE TABLE credit_transactions
(
    owner_id    BLOB    NOT NULL,
    sequence    INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    amount      INTEGER NOT NULL,
    reserved    INTEGER NOT NULL DEFAULT 0,
    balance     INTEGER,
    job_id      BLOB,
    reference   TEXT,
    reason      TEXT,
    recorded_at TEXT    NOT NULL,
    job_run     INTEGER,
    member_id   BLOB,
    period      TEXT,
    PRIMARY KEY (owner_id, sequence)
);

CREATE INDEX credit_transactions_member_reservation ON credit_transactions (owner_id, job_id, job_run)
    WHERE kind = 'reservation' AND member_id IS NOT NULL;
CREATE INDEX credit_transactions_member_usage ON credit_transactions (owner_id, period, member_id)
    WHERE member_id IS NOT NULL;

CREATE TABLE stripe_webhook_events
(
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    processed_at TEXT NOT NULL
);

CREATE TABLE stripe_customers
(
    customer_id TEXT PRIMARY KEY,
    user_id     BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    owner_kind  TEXT NOT NULL DEFAULT 'user' CHECK (owner_kind IN ('user', 'organization'))
);

CREATE INDEX stripe_customers_user_id ON stripe_customers (user_id);

CREATE TABLE allowance_sweeps
(
    period       TEXT PRIMARY KEY,
    last_account TEXT,
    finished_at  TEXT
);

CREATE TABLE organization_list
(
    organization_id BLOB PRIMARY KEY,
    name            TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    deleted_at      TEXT,
    last_sequence   INTEGER NOT NULL
);

CREATE TABLE organization_members
(
    organization_id      BLOB NOT NULL,
    user_id              BLOB NOT NULL,
    email                TEXT NOT NULL,
    role                 TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    monthly_credit_limit INTEGER,
    joined_at            TEXT NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);

CREATE INDEX organization_members_user ON organization_members (user_id, organization_id);

CREATE TABLE organization_invitations
(
    invitation_id   BLOB PRIMARY KEY,
    organization_id BLOB NOT NULL,
    email           TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by      BLOB NOT NULL,
    invited_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'revoked', 'replaced'))
);

CREATE INDEX organization_invitations_org ON organization_invitations (organization_id, invitation_id DESC);
