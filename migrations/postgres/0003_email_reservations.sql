-- Set validation for unique e-mail addresses. Not a read model: written synchronously before
-- `RegisterUser` runs and released if registration fails. Also the lookup from e-mail to user
-- id at login, which must not lag behind registration.
CREATE TABLE email_reservations
(
    email       text PRIMARY KEY, -- normalised: trimmed and lower-cased
    user_id     uuid        NOT NULL UNIQUE,
    reserved_at timestamptz NOT NULL DEFAULT now()
);
