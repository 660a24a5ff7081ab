-- Airlock relay core (SQLite). Times are epoch milliseconds; ids are opaque text.
-- Keep this schema and migrations/postgres/0001_relay_core.sql semantically identical.

CREATE TABLE interfaces (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
    config      TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE admin_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE connectors (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    key_hash        TEXT NOT NULL UNIQUE,
    all_interfaces  INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER,
    revoked_at      INTEGER
);

-- Which interfaces a connector may serve when all_interfaces = 0.
CREATE TABLE connector_scopes (
    connector_id  TEXT NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    interface_id  TEXT NOT NULL REFERENCES interfaces(id) ON DELETE CASCADE,
    PRIMARY KEY (connector_id, interface_id)
);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    interface_id      TEXT NOT NULL REFERENCES interfaces(id) ON DELETE CASCADE,
    visitor_id        TEXT NOT NULL,
    resume_hash       TEXT NOT NULL UNIQUE,
    identity          TEXT,
    page_url          TEXT,
    page_title        TEXT,
    referrer          TEXT,
    locale            TEXT,
    ip                TEXT,
    user_agent        TEXT,
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended', 'expired')),
    -- The session's change counter: every new message and every change to one takes the next value.
    last_seq          INTEGER NOT NULL DEFAULT 0,
    message_count     INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    last_activity_at  INTEGER NOT NULL
);
CREATE INDEX sessions_by_activity ON sessions (last_activity_at DESC, id DESC);
CREATE INDEX sessions_by_interface ON sessions (interface_id, last_activity_at DESC);

-- A session may have several live session tokens (one per tab that resumed it).
CREATE TABLE session_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);
CREATE INDEX session_tokens_by_session ON session_tokens (session_id);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    rev         INTEGER NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'event')),
    text        TEXT NOT NULL,
    html        TEXT,
    status      TEXT NOT NULL,
    client_id   TEXT,
    reply_to    TEXT,
    error       TEXT,
    context     TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (session_id, seq),
    UNIQUE (session_id, client_id)
);
CREATE INDEX messages_by_rev ON messages (session_id, rev);

-- Visitor messages waiting for, or held by, the agent. One row per user message.
CREATE TABLE inbox (
    message_id    TEXT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    session_id    TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    interface_id  TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'leased', 'done', 'dead')),
    lease_id      TEXT,
    leased_until  INTEGER,
    leased_by     TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    INTEGER NOT NULL,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX inbox_pending ON inbox (session_id, seq) WHERE state IN ('queued', 'leased');
CREATE INDEX inbox_ready ON inbox (state, created_at) WHERE state IN ('queued', 'leased');
CREATE INDEX inbox_dead ON inbox (updated_at DESC) WHERE state = 'dead';

-- Every lease ever granted, so a call on a superseded lease is told so (409), not "unknown".
CREATE TABLE leases (
    lease_id      TEXT PRIMARY KEY,
    message_id    TEXT NOT NULL REFERENCES inbox(message_id) ON DELETE CASCADE,
    connector_id  TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX leases_by_message ON leases (message_id);

-- Agent replies: at most one per inbox item. The text lives in messages (the session's log).
CREATE TABLE outbox (
    inbox_id    TEXT PRIMARY KEY REFERENCES inbox(message_id) ON DELETE CASCADE,
    message_id  TEXT NOT NULL UNIQUE REFERENCES messages(id) ON DELETE CASCADE,
    lease_id    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('streaming', 'complete', 'failed')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
