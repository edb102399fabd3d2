-- Conversations: direct messages, read state, mentions.
-- A DM is a private channel of kind 'dm' whose member set is fixed; dm_key (a hash of the sorted
-- member ids) makes opening the same set twice, even concurrently, return the same channel.
-- Channel names stay unique per tenant among channels only (a DM has no name of its own).
ALTER TABLE channels
    ADD COLUMN kind    text NOT NULL DEFAULT 'channel' CHECK (kind IN ('channel', 'dm')),
    ADD COLUMN dm_key  text CHECK ((kind = 'dm') = (dm_key IS NOT NULL));
CREATE UNIQUE INDEX channels_dm_key_uq ON channels (tenant_id, dm_key) WHERE dm_key IS NOT NULL;
DROP INDEX channels_tenant_name_uq;
CREATE UNIQUE INDEX channels_tenant_name_uq ON channels (tenant_id, lower(name)) WHERE kind = 'channel';

-- The id of the last message a member has read (0: none). last_read_at was never used.
ALTER TABLE channel_members ADD COLUMN last_read_id bigint NOT NULL DEFAULT 0;

-- Unread counts: a range of this index after the member's last read id, capped, read without
-- touching the table (the partial predicate and INCLUDE make it an index-only scan).
CREATE INDEX messages_unread_idx ON messages (channel_id, id) INCLUDE (sender_id)
    WHERE deleted_at IS NULL AND (thread_id IS NULL OR also_to_channel);

-- One row per member a message notifies (named, or every member for @here/@channel), written by
-- the persist worker with the message; a deleted message's rows go with it.
CREATE TABLE message_mentions (
    user_id     text NOT NULL,
    channel_id  uuid NOT NULL,
    message_id  bigint NOT NULL,
    tenant_id   uuid NOT NULL,
    sender_id   text NOT NULL,
    PRIMARY KEY (user_id, channel_id, message_id)
);
CREATE INDEX message_mentions_message_idx ON message_mentions (message_id);
CREATE INDEX message_mentions_recent_idx ON message_mentions (tenant_id, user_id, message_id);
