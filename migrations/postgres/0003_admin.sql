-- The admin surface: an audit log of admin actions. Keep in step with the other backend's file.

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    -- Who acted: `admin_key:<id> (<name>)`, `configured admin key`, or `cli`.
    actor       TEXT NOT NULL,
    -- What was done, e.g. `interface.update`, `session.delete`, `connector.revoke`.
    action      TEXT NOT NULL,
    -- What it was done to: a slug, a session id, a connector id.
    target      TEXT NOT NULL,
    -- JSON with the details of the change, or NULL.
    detail      TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (at DESC, id DESC);
