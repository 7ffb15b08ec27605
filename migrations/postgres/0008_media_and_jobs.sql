-- Read model: every uploaded video, for listing a project's assets. A released video (its
-- project deleted) stays as a tombstone with `released_at` set.
CREATE TABLE asset_list
(
    asset_id      uuid PRIMARY KEY,
    owner_id      uuid        NOT NULL,
    project_id    uuid        NOT NULL,
    filename      text        NOT NULL,
    content_type  text        NOT NULL,
    size_bytes    bigint      NOT NULL,
    sha256        text        NOT NULL,
    duration_ms   bigint,
    width         integer     NOT NULL,
    height        integer     NOT NULL,
    video_codec   text        NOT NULL,
    audio_codec   text,
    uploaded_at   timestamptz NOT NULL,
    released_at   timestamptz,
    -- The sequence, in the owner's MediaLibrary aggregate, of the last event applied here.
    last_sequence bigint      NOT NULL
);

CREATE INDEX asset_list_project ON asset_list (project_id, asset_id DESC) WHERE released_at IS NULL;
CREATE INDEX asset_list_owner ON asset_list (owner_id);

-- Read model: one row per job, for listing, filtering and statistics.
CREATE TABLE job_list
(
    job_id        uuid PRIMARY KEY,
    owner_id      uuid        NOT NULL,
    project_id    uuid        NOT NULL,
    job_type      text        NOT NULL,
    status        text        NOT NULL,
    progress      smallint    NOT NULL DEFAULT 0,
    attempts      integer     NOT NULL DEFAULT 0,
    max_retries   integer     NOT NULL,
    asset_id      uuid,
    error         text,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    last_sequence bigint      NOT NULL
);

CREATE INDEX job_list_owner ON job_list (owner_id, job_id DESC) WHERE deleted_at IS NULL;
