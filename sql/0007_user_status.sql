-- A member's own status in a workspace (away / do not disturb, a custom text), until a time.
-- Kept with the membership, in PostgreSQL: it outlives Redis restarts and every device reads it.
ALTER TABLE tenant_members
    ADD COLUMN status_presence  text CHECK (status_presence IN ('away', 'dnd')),
    ADD COLUMN status_text      text NOT NULL DEFAULT '' CHECK (char_length(status_text) <= 100),
    ADD COLUMN status_expires   timestamptz;
