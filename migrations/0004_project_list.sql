-- Read model: the projects a user can see, one row per live project.
CREATE TABLE project_list
(
    project_id  uuid PRIMARY KEY,
    owner_id    uuid        NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Listing is by owner, newest first; UUIDv7 ids sort by creation time and serve as the cursor.
CREATE INDEX project_list_owner ON project_list (owner_id, project_id DESC);
