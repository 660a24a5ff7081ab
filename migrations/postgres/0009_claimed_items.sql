-- What the agent needs for the items a claim leased (`Store::claim`), as one function, so that a
-- claim and the read of its items are one statement, one round trip:
--
--   WITH c AS MATERIALIZED (SELECT ... FROM airlock_claim(...))
--   SELECT ... FROM airlock_claimed_items((SELECT string_agg(message_id, ' ') FROM c), ...)
--
-- The read must see what the claim wrote (the message's new status and `rev`, the session's
-- counters, the typing reply): a statement's own scans do not, but a volatile function's queries
-- do, each with a snapshot taken when it starts. One query for all the items, as the bridge ran
-- it on its own before (`relay::CLAIMED_ITEMS`, docs/performance-history.md, "Eighteenth
-- round"); the columns are `message_columns!` and `select_sessions!` in bridge/src/store.
--
-- Rows: for each item (`p_ids`, message ids separated by spaces) one with `part` 0 (the message,
-- its context, its session as JSON, its interface's configuration), then up to `p_history` with
-- `part` 1 (the earlier messages of its session an agent sees, newest first).
CREATE FUNCTION airlock_claimed_items(p_ids TEXT, p_history BIGINT)
RETURNS TABLE (part BIGINT, item_id TEXT, id TEXT, session_id TEXT, seq BIGINT, rev BIGINT,
    role TEXT, text TEXT, html TEXT, status TEXT, client_id TEXT, reply_to TEXT, error TEXT,
    attachments TEXT, created_at BIGINT, updated_at BIGINT, context TEXT, session TEXT,
    config TEXT)
LANGUAGE plpgsql VOLATILE ROWS 21 AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH wanted AS (SELECT unnest(string_to_array(p_ids, ' ')) AS id)
    SELECT 0::BIGINT, m.id, m.id, m.session_id, m.seq, m.rev, m.role, m.text, m.html, m.status,
        m.client_id, m.reply_to, m.error, m.attachments, m.created_at, m.updated_at, m.context,
        (SELECT row_to_json(x)::TEXT FROM (
            SELECT s.id, s.interface_id, i.slug AS interface_slug, s.visitor_id, s.page_url,
                s.page_title, s.referrer, s.locale, s.status, s.last_seq, s.message_count,
                s.created_at, s.last_activity_at, s.identity_user_id, s.identity_name,
                s.identity_email
            FROM sessions s JOIN interfaces i ON i.id = s.interface_id
            WHERE s.id = m.session_id) x),
        (SELECT f.config FROM sessions s JOIN interfaces f ON f.id = s.interface_id
         WHERE s.id = m.session_id)
    FROM wanted w JOIN messages m ON m.id = w.id
    UNION ALL
    SELECT 1::BIGINT, c.id, h.*, NULL::TEXT, NULL::TEXT, NULL::TEXT
    FROM wanted w JOIN messages c ON c.id = w.id CROSS JOIN LATERAL (
        SELECT m.id, m.session_id, m.seq, m.rev, m.role, m.text, m.html, m.status, m.client_id,
            m.reply_to, m.error, m.attachments, m.created_at, m.updated_at
        FROM messages m WHERE m.session_id = c.session_id AND m.seq < c.seq
          AND (m.role = 'user' OR (m.role = 'assistant' AND m.status = 'complete'))
        ORDER BY m.seq DESC LIMIT p_history) h;
END $$;
