-- Message lifecycle: edits, deletions (tombstones), threads, pins and reactions. Each change is an
-- entry of the channel's log with its own id; the persist worker applies it here idempotently.
-- The *_mark columns hold the id of the latest change of their kind applied to the row, so a
-- replayed or reordered change never overwrites a newer one. Added columns have constant defaults:
-- no table rewrite.
ALTER TABLE messages
    ADD COLUMN thread_id        bigint,                          -- a reply: its root's id
    ADD COLUMN also_to_channel  boolean NOT NULL DEFAULT false,  -- a reply listed in the channel too
    ADD COLUMN edited_at        timestamptz,
    ADD COLUMN edit_mark        bigint NOT NULL DEFAULT 0,
    ADD COLUMN deleted_at       timestamptz,                     -- set: a tombstone (body emptied)
    ADD COLUMN deleted_by       text,
    ADD COLUMN reply_count      integer NOT NULL DEFAULT 0 CHECK (reply_count >= 0),
    ADD COLUMN last_reply_at    timestamptz,
    ADD COLUMN pinned_at        timestamptz,                     -- set: pinned
    ADD COLUMN pinned_by        text,
    ADD COLUMN pin_mark         bigint NOT NULL DEFAULT 0;

-- A tombstone keeps its place but not its text. NOT VALID: existing rows satisfied the stricter
-- check already, so the migration does not scan the table under its lock to prove it again.
ALTER TABLE messages DROP CONSTRAINT messages_body_check;
ALTER TABLE messages ADD CONSTRAINT messages_body_check
    CHECK (char_length(body) BETWEEN 1 AND 4000 OR (deleted_at IS NOT NULL AND body = '')) NOT VALID;

-- A thread's replies by keyset; and a channel's pins.
CREATE INDEX messages_thread_idx ON messages (thread_id, id) WHERE thread_id IS NOT NULL;
CREATE INDEX messages_pinned_idx ON messages (channel_id, pin_mark) WHERE pinned_at IS NOT NULL;

-- One row per (message, emoji, user) that ever reacted: ``added`` is the current state and
-- ``change_id`` the change that set it (rows taken back stay, so an older change cannot revive one).
-- No foreign key, like messages (D5): a channel's or message's deletion removes its rows.
CREATE TABLE message_reactions (
    message_id  bigint NOT NULL,
    emoji       text NOT NULL CHECK (char_length(emoji) BETWEEN 1 AND 64),
    user_id     text NOT NULL,
    tenant_id   uuid NOT NULL,
    channel_id  uuid NOT NULL,
    added       boolean NOT NULL,
    change_id   bigint NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);
CREATE INDEX message_reactions_channel_idx ON message_reactions (channel_id);
