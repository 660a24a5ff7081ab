-- Files visitors attach to their messages. The bytes live in the database, so several bridge
-- replicas share them and a backup holds everything. Keep in step with the postgres migration.

CREATE TABLE attachments (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    interface_id  TEXT NOT NULL REFERENCES interfaces(id) ON DELETE CASCADE,
    -- Set when the attachment is sent with a message; until then it is pending.
    message_id    TEXT REFERENCES messages(id) ON DELETE CASCADE,
    filename      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    data          BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX attachments_by_session ON attachments (session_id);

-- The attachments of a message as JSON refs ({id, filename, content_type, size}), so reading a
-- transcript needs no join.
ALTER TABLE messages ADD COLUMN attachments TEXT;
