-- A session's row is updated at every change of its messages (`airlock_next_rev`): five times
-- for each relayed message. Each of those updates also set `last_activity_at`, which two indexes
-- hold, so PostgreSQL could never update the row in place (a "HOT" update, which needs every
-- indexed column unchanged): each update put a new entry into each of the table's five indexes,
-- and the many dead versions of a busy session's row were walked by every look-up of it
-- (docs/performance.md, "Eleventh round").
--
-- Activity is now kept to the second: a change less than a second after the recorded activity
-- leaves it as it is, so most updates leave the indexed columns alone and are made in place. Room
-- on each page for those new versions: `fillfactor` 90.

CREATE OR REPLACE FUNCTION airlock_next_rev(p_session TEXT, p_new_message BIGINT, p_now BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    v_rev BIGINT;
BEGIN
    UPDATE sessions SET last_seq = last_seq + 1, message_count = message_count + p_new_message,
        last_activity_at = CASE WHEN p_now >= last_activity_at AND p_now < last_activity_at + 1000
                                THEN last_activity_at ELSE p_now END
    WHERE id = p_session RETURNING last_seq INTO v_rev;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'not_found:session';
    END IF;
    RETURN v_rev;
END $$;

ALTER TABLE sessions SET (fillfactor = 90);
