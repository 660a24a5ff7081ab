-- The PHP web chat bridge's API (see docs/migrating-from-the-php-bridge.md).
-- Keep in step with migrations/postgres/0006_compat.sql.

-- The `session_id` an old client chose for a session of the compat interface; NULL for sessions
-- opened through the native API. One per interface.
ALTER TABLE sessions ADD COLUMN compat_id TEXT;
CREATE UNIQUE INDEX sessions_by_compat_id ON sessions (interface_id, compat_id);

-- The integer ids the old API shows for messages and replies, handed out on first sight.
CREATE TABLE compat_message_numbers (
    number      INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE
);
