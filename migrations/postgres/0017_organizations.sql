-- Read models of organisations: the organisations, their members with roles, and the
-- invitations sent. All three are written by the `organizations` projection and can be
-- rebuilt from the `Organization` events. Who may do what is never decided from these rows:
-- the use cases ask the `Organization` aggregate itself (see the membership guard), so a
-- removal takes effect before this read model catches up.

-- One row per organisation; a deleted one stays as a tombstone (`deleted_at` set) so its
-- `last_sequence` keeps re-delivered events from reviving it.
CREATE TABLE organization_list
(
    organization_id uuid PRIMARY KEY,
    name            text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz,
    -- The aggregate sequence of the last event applied to this organisation's rows.
    last_sequence   bigint      NOT NULL
);

CREATE TABLE organization_members
(
    organization_id      uuid        NOT NULL,
    user_id              uuid        NOT NULL,
    email                text        NOT NULL,
    role                 text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    monthly_credit_limit bigint,
    joined_at            timestamptz NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);

-- "My organisations": by member, in creation order of the organisation (UUIDv7).
CREATE INDEX organization_members_user ON organization_members (user_id, organization_id);

CREATE TABLE organization_invitations
(
    invitation_id   uuid PRIMARY KEY,
    organization_id uuid        NOT NULL,
    email           text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by      uuid        NOT NULL,
    invited_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    state           text        NOT NULL CHECK (state IN ('pending', 'accepted', 'revoked', 'replaced'))
);

CREATE INDEX organization_invitations_org ON organization_invitations (organization_id, invitation_id DESC);
