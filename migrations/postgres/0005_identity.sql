-- Signed visitor identity: who the host site says the visitor is, from a verified identity token
-- (the token's `sub`, `name` and `email`). NULL for anonymous sessions. One user's active
-- session on an interface is found by the index, so their other devices join it.
-- Keep in step with migrations/sqlite/0005_identity.sql.

ALTER TABLE sessions ADD COLUMN identity_user_id TEXT;
ALTER TABLE sessions ADD COLUMN identity_name TEXT;
ALTER TABLE sessions ADD COLUMN identity_email TEXT;
CREATE INDEX sessions_by_identity ON sessions (interface_id, identity_user_id);
