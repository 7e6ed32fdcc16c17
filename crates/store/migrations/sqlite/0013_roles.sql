-- Roles (named admin and auditor tokens) and the chained admin events; see
-- src/access.rs. The bootstrap admin token stays in store_state/settings.

-- Named API tokens. Only the SHA-256 of a token is stored; the token names
-- its row's uuid so the hash is compared in constant time, never looked up.
-- A revoked token keeps its row (admin events name it) and frees its name.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    uuid          BLOB    NOT NULL UNIQUE,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'auditor')),
    token_hash    BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Admin events: one row per state-changing admin action, in a hash chain of
-- their own (`prev` is the `hash` of the row before, 32 zero bytes before
-- seq 1). `signature` is the server's Ed25519 signature over the event's
-- signed form (`key_id`, `public_key` name the key).
CREATE TABLE admin_events (
    seq         INTEGER PRIMARY KEY,
    uuid        BLOB    NOT NULL,
    at_ns       INTEGER NOT NULL,
    actor_id    BLOB,
    actor_name  TEXT    NOT NULL,
    actor_role  TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    public_key  BLOB    NOT NULL,
    signature   BLOB    NOT NULL,
    prev        BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);
