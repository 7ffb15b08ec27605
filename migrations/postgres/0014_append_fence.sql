-- Readers of the log fence only on transactions that can still append to it, not on every
-- transaction of the Postgres server (see `crates/eventlog/src/reader.rs`, `append_fence`).
--
-- The fence finds the appenders that are still running by their lock on `events`: an INSERT
-- takes it before it runs, so before the row's `tx_id` (the transaction id) is assigned, and
-- holds it until the transaction ends. That covers every appender only if no transaction takes
-- a transaction id first and appends later, since a transaction that does would run with an id
-- the fence already passed, while holding no lock the fence could see. This trigger refuses
-- such an append: the events must be the first thing a transaction writes. Keyframe's writers
-- append in a statement of their own; a transaction may append several times once its first
-- write was an append.
CREATE FUNCTION events_append_first() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL
        AND current_setting('keyframe.appending', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'events must be the first thing a transaction writes'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                HINT = 'Append the events in a transaction of their own, or before any other write.';
    END IF;
    PERFORM set_config('keyframe.appending', 'on', true);
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_append_first
    BEFORE INSERT ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION events_append_first();
