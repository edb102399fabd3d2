-- Removed members stay recorded so a still-valid token cannot silently re-provision them;
-- members who leave on their own are deleted and re-join on their next call.
ALTER TABLE tenant_members ADD COLUMN removed_at timestamptz;

-- Transactional outbox: a domain event is written in the same transaction as the change it
-- describes, published right after commit, and deleted once JetStream has it. The worker's relay
-- republishes rows left behind by a crash (JetStream dedupes on the event id).
CREATE TABLE event_outbox (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    type        text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_outbox_created_idx ON event_outbox (created_at);
