-- The displayed profile (display name, email) belongs to a tenant membership, not to the global
-- identity: a token of one tenant may only change what that tenant shows. Existing members keep
-- what they showed so far (the users row's values). users.display_name/email stay as the values
-- the identity was first seen with; nothing reads them any more.
ALTER TABLE tenant_members ADD COLUMN display_name text, ADD COLUMN email text;
UPDATE tenant_members m SET display_name = u.display_name, email = u.email FROM users u WHERE u.id = m.user_id;
ALTER TABLE tenant_members
    ALTER COLUMN display_name SET NOT NULL,
    ADD CONSTRAINT tenant_members_display_name_check CHECK (char_length(display_name) BETWEEN 1 AND 100),
    ADD CONSTRAINT tenant_members_email_check CHECK (email IS NULL OR char_length(email) <= 320);
