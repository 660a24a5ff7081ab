-- The relay's hot writes as server-side functions (PostgreSQL only; SQLite runs them on the
-- bridge's writer thread, bridge/src/store/sqlite_relay.rs). Each is called as one statement, so a
-- write is one round trip to the server and one commit, instead of a round trip per statement.
-- They take the same steps in the same order as the sqlx versions in bridge/src/store/relay.rs
-- and sessions.rs, which remain for the rare cases these leave to them (a message with
-- attachments, a claim that must dead-letter an item first); tests/store_conformance.rs holds
-- every version to one behaviour.
--
-- A refusal (an unknown lease, a closed session, ...) is raised with SQLSTATE 'AL000' and a
-- message the bridge maps to its own error (`store::pg_relay`). Ids are made by the bridge.

-- The session's next change number; marks activity (`next_rev` in bridge/src/store/mod.rs).
CREATE FUNCTION airlock_next_rev(p_session TEXT, p_new_message BIGINT, p_now BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    v_rev BIGINT;
BEGIN
    UPDATE sessions SET last_seq = last_seq + 1, message_count = message_count + p_new_message,
        last_activity_at = p_now
    WHERE id = p_session RETURNING last_seq INTO v_rev;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'not_found:session';
    END IF;
    RETURN v_rev;
END $$;

-- Writes the reply to an inbox item: creates it (as `p_new_id`) when `p_existing` is NULL, else
-- replaces the text, status and lease of that one. Returns the reply's message id.
CREATE FUNCTION airlock_write_reply(p_session TEXT, p_inbox TEXT, p_lease TEXT, p_text TEXT,
    p_html TEXT, p_status TEXT, p_existing TEXT, p_new_id TEXT, p_now BIGINT)
RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    v_rev BIGINT;
BEGIN
    IF p_existing IS NULL THEN
        v_rev := airlock_next_rev(p_session, 1, p_now);
        INSERT INTO messages (id, session_id, seq, rev, role, text, html, status, reply_to, error,
            created_at, updated_at)
        VALUES (p_new_id, p_session, v_rev, v_rev, 'assistant', p_text, p_html, p_status, p_inbox,
            NULL, p_now, p_now);
        INSERT INTO outbox (inbox_id, message_id, lease_id, state, created_at, updated_at)
        VALUES (p_inbox, p_new_id, p_lease, p_status, p_now, p_now);
        RETURN p_new_id;
    END IF;
    v_rev := airlock_next_rev(p_session, 0, p_now);
    UPDATE messages SET text = p_text, html = p_html, status = p_status, error = NULL, rev = v_rev,
        updated_at = p_now
    WHERE id = p_existing;
    UPDATE outbox SET lease_id = p_lease, state = p_status, updated_at = p_now
    WHERE inbox_id = p_inbox;
    RETURN p_existing;
END $$;

-- A visitor's message without attachments and its inbox item (`Store::send_user_message`).
-- Returns the stored message: the new one (id `p_id`), or the one this `client_id` stored before.
CREATE FUNCTION airlock_send(p_session TEXT, p_client TEXT, p_text TEXT, p_context TEXT,
    p_id TEXT, p_now BIGINT)
RETURNS SETOF messages LANGUAGE plpgsql AS $$
DECLARE
    v_existing messages%ROWTYPE;
    v_status TEXT;
    v_interface TEXT;
    v_rev BIGINT;
BEGIN
    SELECT * INTO v_existing FROM messages WHERE session_id = p_session AND client_id = p_client;
    IF FOUND THEN
        IF v_existing.text <> p_text THEN
            RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'client_id_reused';
        END IF;
        RETURN NEXT v_existing;
        RETURN;
    END IF;
    SELECT status, interface_id INTO v_status, v_interface FROM sessions WHERE id = p_session;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'not_found:session';
    END IF;
    IF v_status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'session_closed:' || v_status;
    END IF;
    v_rev := airlock_next_rev(p_session, 1, p_now);
    INSERT INTO messages (id, session_id, seq, rev, role, text, status, client_id, context,
        attachments, created_at, updated_at)
    VALUES (p_id, p_session, v_rev, v_rev, 'user', p_text, 'queued', p_client, p_context, NULL,
        p_now, p_now);
    INSERT INTO inbox (message_id, session_id, interface_id, seq, state, attempts, not_before,
        created_at, updated_at)
    VALUES (p_id, p_session, v_interface, v_rev, 'queued', 0, p_now, p_now, p_now);
    RETURN QUERY SELECT * FROM messages WHERE id = p_id;
END $$;

-- Leases up to `p_max` items to `p_connector` (`Store::claim`), starting each one's reply with
-- `p_typing`. `p_ids` holds two fresh ids per item, space-separated: its lease's, then its reply's.
-- A candidate whose lease ran out on its last attempt must be dead-lettered first: that raises
-- 'claim_needs_dead_letter', undoing the call, and the bridge claims through its sqlx version.
CREATE FUNCTION airlock_claim(p_connector TEXT, p_all_interfaces BIGINT, p_max BIGINT,
    p_lease_ms BIGINT, p_max_attempts BIGINT, p_typing BOOLEAN, p_ids TEXT, p_now BIGINT)
RETURNS TABLE (lease_id TEXT, message_id TEXT, session_id TEXT, attempt BIGINT,
    leased_until BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c RECORD;
    v_ids TEXT[] := string_to_array(p_ids, ' ');
    v_n INT := 0;
    v_lease TEXT;
    v_until BIGINT := p_now + p_lease_ms;
    v_rev BIGINT;
    v_reply TEXT;
BEGIN
    FOR c IN
        SELECT i.message_id, i.session_id, i.state, i.attempts FROM inbox i
        WHERE i.state IN ('queued', 'leased')
          AND ((i.state = 'queued' AND i.not_before <= p_now)
               OR (i.state = 'leased' AND i.leased_until <= p_now))
          AND NOT EXISTS (SELECT 1 FROM inbox p WHERE p.session_id = i.session_id
               AND p.state IN ('queued', 'leased') AND p.seq < i.seq)
          AND (CASE WHEN EXISTS (SELECT 1 FROM interface_connectors x
                         WHERE x.interface_id = i.interface_id)
               THEN EXISTS (SELECT 1 FROM interface_connectors x
                         WHERE x.interface_id = i.interface_id AND x.connector_id = p_connector)
               ELSE (p_all_interfaces = 1 OR i.interface_id IN
                    (SELECT s.interface_id FROM connector_scopes s
                     WHERE s.connector_id = p_connector))
               END)
        ORDER BY i.created_at, i.seq LIMIT p_max
        FOR UPDATE OF i SKIP LOCKED
    LOOP
        IF c.state = 'leased' AND c.attempts >= p_max_attempts THEN
            RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'claim_needs_dead_letter';
        END IF;
        v_n := v_n + 1;
        v_lease := v_ids[2 * v_n - 1];
        UPDATE inbox SET state = 'leased', lease_id = v_lease, leased_until = v_until,
            leased_by = p_connector, attempts = c.attempts + 1, updated_at = p_now
        WHERE message_id = c.message_id AND state = c.state AND attempts = c.attempts;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        INSERT INTO leases (lease_id, message_id, connector_id, attempt, created_at)
        VALUES (v_lease, c.message_id, p_connector, c.attempts + 1, p_now);
        IF c.attempts = 0 THEN
            -- First delivery: the visitor's message is now with the agent.
            v_rev := airlock_next_rev(c.session_id, 0, p_now);
            UPDATE messages SET status = 'processing', rev = v_rev, updated_at = p_now
            WHERE id = c.message_id;
        END IF;
        IF p_typing THEN
            -- An empty streaming reply: the agent typing (what a typing stream call writes). A
            -- redelivery starts the earlier attempt's reply over.
            SELECT o.message_id INTO v_reply FROM outbox o WHERE o.inbox_id = c.message_id;
            PERFORM airlock_write_reply(c.session_id, c.message_id, v_lease, '', NULL,
                'streaming', v_reply, v_ids[2 * v_n], p_now);
        END IF;
        lease_id := v_lease;
        message_id := c.message_id;
        session_id := c.session_id;
        attempt := c.attempts + 1;
        leased_until := v_until;
        RETURN NEXT;
    END LOOP;
END $$;

-- Stores the final reply and finishes the item (`Store::reply`). Repeated on the same lease it
-- returns the stored reply. Returns the reply message.
CREATE FUNCTION airlock_reply(p_lease TEXT, p_connector TEXT, p_text TEXT, p_html TEXT,
    p_new_id TEXT, p_now BIGINT)
RETURNS SETOF messages LANGUAGE plpgsql AS $$
DECLARE
    v_item TEXT;
    v_session TEXT;
    v_connector TEXT;
    v_state TEXT;
    v_current TEXT;
    v_reply TEXT;
    v_rev BIGINT;
BEGIN
    -- Locks the item: serialises with a concurrent claim or reply of it on another replica.
    SELECT l.message_id, i.session_id, l.connector_id, i.state, i.lease_id
    INTO v_item, v_session, v_connector, v_state, v_current
    FROM leases l JOIN inbox i ON i.message_id = l.message_id
    WHERE l.lease_id = p_lease FOR UPDATE OF i;
    IF NOT FOUND OR v_connector <> p_connector THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'not_found:lease';
    END IF;
    IF v_current IS DISTINCT FROM p_lease THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'lease_superseded';
    END IF;
    SELECT o.message_id INTO v_reply FROM outbox o WHERE o.inbox_id = v_item;
    IF v_state = 'done' THEN
        IF v_reply IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'item_finished:answered';
        END IF;
        RETURN QUERY SELECT * FROM messages WHERE id = v_reply;
        RETURN;
    ELSIF v_state = 'dead' THEN
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'item_finished:dead-lettered';
    ELSIF v_state <> 'leased' THEN
        -- Queued again after a failure: the lease was given up.
        RAISE EXCEPTION USING ERRCODE = 'AL000', MESSAGE = 'lease_superseded';
    END IF;
    v_reply := airlock_write_reply(v_session, v_item, p_lease, p_text, p_html, 'complete',
        v_reply, p_new_id, p_now);
    UPDATE inbox SET state = 'done', leased_until = NULL, updated_at = p_now
    WHERE message_id = v_item;
    v_rev := airlock_next_rev(v_session, 0, p_now);
    UPDATE messages SET status = 'answered', rev = v_rev, updated_at = p_now WHERE id = v_item;
    RETURN QUERY SELECT * FROM messages WHERE id = v_reply;
END $$;
