-- Read model: a user's sessions, for "list my sessions", "revoke one" and "log out everywhere".
-- An ended session stays (`ended_at` set) so re-delivered events cannot revive it.
CREATE TABLE session_list
(
    session_id         uuid PRIMARY KEY,
    user_id            uuid        NOT NULL,
    user_agent         text,
    ip                 text,
    created_at         timestamptz NOT NULL,
    -- The login or the latest refresh: access tokens are not events, so their use is not seen.
    last_used_at       timestamptz NOT NULL,
    refresh_expires_at timestamptz NOT NULL,
    ended_at           timestamptz,
    end_reason         text,
    -- The aggregate sequence of the last event applied to this row.
    last_sequence      bigint      NOT NULL
);

CREATE INDEX session_list_user_active ON session_list (user_id, session_id DESC) WHERE ended_at IS NULL;
