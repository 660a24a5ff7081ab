-- Full interface configuration. Keep in step with the other backend's file.

-- Which connectors may serve an interface, as set on the interface (`connectors` in its config,
-- mirrored here so the claim query can filter in SQL). No rows = any connector whose own scope
-- includes the interface.
CREATE TABLE interface_connectors (
    interface_id  TEXT NOT NULL REFERENCES interfaces(id) ON DELETE CASCADE,
    connector_id  TEXT NOT NULL REFERENCES connectors(id) ON DELETE CASCADE,
    PRIMARY KEY (interface_id, connector_id)
);

-- Bridge-wide values every replica must share, e.g. the key that signs preview tokens.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
