-- The quarantine index. Raw messages live in the blob store, addressed by
-- sha256; this is what operators search and what release and audit change.
-- Times are Unix milliseconds. Keep in step with ../sqlite/.

CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    received_ms   BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    state         TEXT NOT NULL,
    door          TEXT NOT NULL,
    action        TEXT NOT NULL,
    score         BIGINT NOT NULL,
    purged_ms     BIGINT,
    sender        TEXT,
    subject       TEXT,
    message_id    TEXT,
    client_ip     TEXT,
    helo          TEXT,
    queue_id      TEXT,
    sha256        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    rule          TEXT,
    summary       TEXT NOT NULL,
    rules_version TEXT NOT NULL,
    envelope      TEXT NOT NULL,
    report        TEXT NOT NULL
);
CREATE INDEX messages_received ON messages (received_ms);
CREATE INDEX messages_state_expires ON messages (state, expires_ms);
CREATE INDEX messages_state_received ON messages (state, received_ms);
CREATE INDEX messages_sender ON messages (sender);
CREATE INDEX messages_sha256 ON messages (sha256);

CREATE TABLE recipients (
    message_id  TEXT NOT NULL REFERENCES messages (id),
    address     TEXT NOT NULL,
    state       TEXT NOT NULL,
    prev_state  TEXT,
    -- A release in progress owns the recipient: its random claim id and
    -- when it took it (stale claims are recovered, live ones never).
    claim_id    TEXT,
    claimed_ms  BIGINT,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX recipients_address ON recipients (address, state);

CREATE TABLE findings (
    message_id  TEXT NOT NULL REFERENCES messages (id),
    position    BIGINT NOT NULL,
    rule        TEXT NOT NULL,
    path        TEXT NOT NULL,
    severity    TEXT,
    action      TEXT,
    monitor     BIGINT NOT NULL
);
CREATE INDEX findings_rule ON findings (rule);
CREATE INDEX findings_message ON findings (message_id);

CREATE TABLE audit (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    via         TEXT NOT NULL,
    address     TEXT,
    recipient   TEXT,
    from_state  TEXT,
    to_state    TEXT,
    detail      TEXT
);
CREATE INDEX audit_message ON audit (message_id, seq);

-- Release links are single use: a link's nonce is recorded when it is spent.
CREATE TABLE spent_links (
    nonce       TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    spent_ms    BIGINT NOT NULL
);
