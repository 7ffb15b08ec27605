-- Read model: every account, for administrators (list, show, stats). Never holds a secret: no
-- password hash, token hash, sealed key or TOTP secret.
CREATE TABLE user_directory
(
    user_id           uuid PRIMARY KEY,
    email             text        NOT NULL,
    full_name         text,
    roles             text[]      NOT NULL,
    email_verified    boolean     NOT NULL DEFAULT false,
    two_factor        boolean     NOT NULL DEFAULT false,
    -- Why an administrator suspended the account, while it is suspended.
    suspended_reason  text,
    created_at        timestamptz NOT NULL,
    -- The aggregate sequence of the last event applied to this row.
    last_sequence     bigint      NOT NULL
);

-- Listing is newest first by the primary key (UUIDv7 ids sort by creation time and serve as the
-- cursor); administrators also look accounts up by address.
CREATE INDEX user_directory_email ON user_directory (email);
