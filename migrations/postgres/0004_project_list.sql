-- Read model: the projects a user can see. A deleted project stays as a tombstone
-- (`deleted_at` set) so its `last_sequence` keeps re-delivered events from reviving it.
CREATE TABLE project_list
(
    project_id    uuid PRIMARY KEY,
    owner_id      uuid        NOT NULL,
    name          text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    -- The aggregate sequence of the last event applied to this row.
    last_sequence bigint      NOT NULL
);

-- Listing is by owner, newest first; UUIDv7 ids sort by creation time and serve as the cursor.
CREATE INDEX project_list_owner ON project_list (owner_id, project_id DESC) WHERE deleted_at IS NULL;
