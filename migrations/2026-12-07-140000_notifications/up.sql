-- Notifications (PROTOCOL.md, Edition 2): who is to be told of which
-- unread messages, their Web Push subscriptions, and the VAPID key pair.

-- One row per (member, thread) with something to tell: written in the
-- send's own transaction (group commit), so a restart during the delay
-- loses nothing, and claimed by the notification worker when due.
CREATE TABLE pending_notifications (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    thread_id uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    company_id uuid NOT NULL REFERENCES companies (id),
    -- Every covered message, unread ones kept until read past.
    seqs bigint[] NOT NULL,
    -- The covered seqs that mention the member.
    mentioned_seqs bigint[] NOT NULL DEFAULT '{}',
    -- The newest seq a notification was already sent for: later seqs are
    -- news, earlier unread ones are repeated in the next notification.
    notified_through bigint NOT NULL DEFAULT 0,
    -- When the worker next looks at the row; NULL once sent with nothing
    -- new since.
    due_at timestamptz,
    PRIMARY KEY (user_id, thread_id)
);
CREATE INDEX pending_notifications_due ON pending_notifications (due_at)
    WHERE due_at IS NOT NULL;

-- A browser's PushSubscription: where its push service takes messages for
-- it, and the keys they are encrypted to (RFC 8291).
CREATE TABLE push_subscriptions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint text NOT NULL,
    -- base64url: the browser's P-256 public key (65 bytes) and its
    -- 16-byte authentication secret.
    p256dh text NOT NULL,
    auth text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Subscribing again from the same browser replaces its keys.
    UNIQUE (user_id, endpoint)
);

-- The Web Push messages a fired notification makes, one per subscription:
-- written in the worker's transaction that fires the notification, and
-- removed by the attempt that sends it (claimed FOR UPDATE SKIP LOCKED),
-- so a node dying in between leaves them for another to send.
CREATE TABLE push_deliveries (
    id bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    -- The JSON {thread_id, seq, title, body}, encrypted at send time.
    payload text NOT NULL,
    -- The Web Push Topic (RFC 8030 5.4): a newer notification of the same
    -- thread replaces an undelivered older one at the push service.
    topic text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX push_deliveries_subscription ON push_deliveries (subscription_id);

-- The VAPID key pair (RFC 8292), generated once by whichever node starts
-- first; one row at most.
CREATE TABLE vapid_keys (
    id smallint PRIMARY KEY CHECK (id = 1),
    -- PKCS#8 DER of the P-256 private key, base64url.
    private_key text NOT NULL,
    -- The uncompressed public point, base64url: what browsers subscribe with.
    public_key text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
