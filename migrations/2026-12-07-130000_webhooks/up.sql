-- Webhooks (PROTOCOL.md, Edition 2): a company's subscriptions, and the
-- transactional outbox their deliveries are made from.
CREATE TABLE webhooks (
    id uuid PRIMARY KEY,
    company_id uuid NOT NULL REFERENCES companies (id),
    url text NOT NULL,
    -- The event types it receives (message.created, ...), checked at the edge.
    events text[] NOT NULL,
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Deleted webhooks are gone for the API and the dispatcher at once;
    -- their rows are purged later, because a delivery in flight holds a
    -- row lock a cascading delete would wait on (up to the 10 s timeout).
    deleted_at timestamptz
);
-- Every commit that could make an event asks "does this company have a
-- webhook for it?": an index probe, nothing more.
CREATE INDEX webhooks_company ON webhooks (company_id) WHERE deleted_at IS NULL;

-- One row per (webhook, event), written in the transaction that commits
-- the change the event describes, and kept after it is delivered (or
-- given up on) as the delivery log. `id` follows commit order within a
-- thread: the writer holds the thread's row lock while it inserts.
CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    webhook_id uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id uuid NOT NULL,
    type text NOT NULL,
    -- Order is kept per (webhook, thread): a failing event holds back the
    -- later ones of its thread only.
    thread_id uuid NOT NULL,
    -- The exact JSON body sent (and signed) on every attempt.
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status integer,
    last_error text,
    delivered_at timestamptz,
    -- Set when retries ran out (24 h): the row stays, the thread moves on.
    failed_at timestamptz
);
-- The heads of pending lanes, and what is due.
CREATE INDEX webhook_deliveries_lanes ON webhook_deliveries (webhook_id, thread_id, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
-- GET /admin/webhooks/{id}/deliveries, newest first.
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, id);
