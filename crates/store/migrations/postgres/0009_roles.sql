-- Roles (named admin and auditor tokens) and the chained admin events; see
-- src/access.rs and migrations/sqlite/0013_roles.sql (the same model).

CREATE TABLE api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid          uuid   NOT NULL UNIQUE,
    name          text   COLLATE "C" NOT NULL,
    role          text   NOT NULL CHECK (role IN ('admin', 'auditor')),
    token_hash    bytea  NOT NULL,
    created_at    bigint NOT NULL,
    last_used_at  bigint,
    revoked_at    bigint
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Appends serialize on this one row: every append locks it first (see
-- src/postgres/tokens.rs), so replicas extend the chain one at a time.
CREATE TABLE admin_event_head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq   bigint  NOT NULL
);
INSERT INTO admin_event_head (seq) VALUES (0);

CREATE TABLE admin_events (
    seq         bigint PRIMARY KEY,
    uuid        uuid   NOT NULL,
    at_ns       bigint NOT NULL,
    actor_id    uuid,
    actor_name  text   NOT NULL,
    actor_role  text   NOT NULL,
    action      text   NOT NULL,
    target      text   NOT NULL,
    detail      text   NOT NULL,
    key_id      text   NOT NULL,
    public_key  bytea  NOT NULL,
    signature   bytea  NOT NULL,
    prev        bytea  NOT NULL,
    hash        bytea  NOT NULL
);
