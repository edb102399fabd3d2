-- The sender's display name as it was when the message was sent, so history shows the same name
-- the live frame showed (and the name survives the user being deleted).
ALTER TABLE messages ADD COLUMN sender_display_name text NOT NULL DEFAULT '';
