-- Published verdicts. `seq` is every consumer's cursor (the pull API, the
-- stream, webhooks, the JSON Lines log). An identity is taken at INSERT,
-- not at COMMIT: writers take pg_advisory_xact_lock first (see store/events.rs)
-- so ids become visible in order. `body` is the event JSON without `seq`, sent
-- as stored. Keep in step with ../sqlite/.

CREATE TABLE events (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id      TEXT NOT NULL UNIQUE,
    at_ms   BIGINT NOT NULL,
    type    TEXT NOT NULL,
    action  TEXT,
    score   BIGINT,
    node    TEXT NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX events_at ON events (at_ms);

-- Small facts about the feed: `pruned_through` is the highest seq retention
-- has deleted, so a consumer behind it learns of the gap (410).
CREATE TABLE event_meta (
    name    TEXT PRIMARY KEY,
    value   BIGINT NOT NULL
);

-- One delivery cursor per webhook: everything up to delivered_seq has been
-- accepted by the receiver. The lease lets one node of many deliver.
CREATE TABLE webhook_cursors (
    name            TEXT PRIMARY KEY,
    delivered_seq   BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    last_ok_ms      BIGINT,
    lease_owner     TEXT,
    lease_until_ms  BIGINT
);
