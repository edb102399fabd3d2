-- echonats initial schema: tenants, users, memberships, channels, channel members, messages.
-- Applied once by `echonats migrate` (recorded in schema_migrations); never edit after release,
-- add a new numbered file instead.

CREATE TABLE tenants (
    id                       uuid PRIMARY KEY,
    name                     text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    max_channels             integer NOT NULL DEFAULT 500 CHECK (max_channels >= 0),
    max_messages_per_second  integer NOT NULL DEFAULT 100 CHECK (max_messages_per_second > 0),
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- A user is an identity (the JWT `sub`, any string an OIDC issuer hands out); membership in a
-- tenant is separate so one identity can join several workspaces (Discord "servers").
CREATE TABLE users (
    id            text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 255),
    email         text CHECK (email IS NULL OR char_length(email) <= 320),
    display_name  text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant_members (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX tenant_members_user_idx ON tenant_members (user_id);

CREATE TABLE channels (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
    topic       text NOT NULL DEFAULT '' CHECK (char_length(topic) <= 250),
    is_private  boolean NOT NULL DEFAULT false,
    created_by  text REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Channel names are unique per tenant, case-insensitively (Slack semantics).
CREATE UNIQUE INDEX channels_tenant_name_uq ON channels (tenant_id, lower(name));

CREATE TABLE channel_members (
    channel_id    uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role          text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at     timestamptz NOT NULL DEFAULT now(),
    last_read_at  timestamptz,
    PRIMARY KEY (channel_id, user_id)
);
CREATE INDEX channel_members_user_idx ON channel_members (tenant_id, user_id);

-- Message ids come from the JetStream stream sequence: unique, increasing in delivery order.
-- No foreign key to channels: the persist worker must be able to store (idempotently, in one
-- batch) messages of a channel deleted meanwhile; deleting a channel deletes its rows instead.
CREATE TABLE messages (
    id          bigint PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    channel_id  uuid NOT NULL,
    sender_id   text NOT NULL,
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 4000),
    nonce       text,
    created_at  timestamptz NOT NULL
);
-- Keyset pagination of a channel's history: WHERE channel_id = $1 AND id < $2 ORDER BY id DESC.
CREATE INDEX messages_channel_id_idx ON messages (channel_id, id);
