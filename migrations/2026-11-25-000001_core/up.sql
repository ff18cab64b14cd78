-- The core schema. Tenant isolation is structural: every row that links a
-- user to a thread carries company_id, and composite foreign keys make a
-- membership or a message that joins two companies impossible to insert.

CREATE TABLE companies (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    company_id    uuid        NOT NULL REFERENCES companies (id),
    display_name  text        NOT NULL CHECK (length(btrim(display_name)) BETWEEN 1 AND 200),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);

CREATE TABLE threads (
    id                uuid        PRIMARY KEY,
    company_id        uuid        NOT NULL REFERENCES companies (id),
    kind              text        NOT NULL CHECK (kind IN ('direct', 'group')),
    title             text        CHECK (title IS NULL OR length(title) <= 200),
    created_by        uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Highest seq handed out in this thread. Incremented under the row lock
    -- in the same transaction as the message insert, so seqs are gapless and
    -- follow commit order whatever process does the insert.
    last_seq          bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    -- A direct thread is identified by its ordered pair of users.
    direct_user_low   uuid,
    direct_user_high  uuid,
    UNIQUE (company_id, id),
    FOREIGN KEY (company_id, created_by) REFERENCES users (company_id, id),
    FOREIGN KEY (company_id, direct_user_low) REFERENCES users (company_id, id),
    FOREIGN KEY (company_id, direct_user_high) REFERENCES users (company_id, id),
    CHECK ((kind = 'direct') = (direct_user_low IS NOT NULL AND direct_user_high IS NOT NULL)),
    CHECK (direct_user_low < direct_user_high)
);

CREATE UNIQUE INDEX threads_one_direct_per_pair
    ON threads (company_id, direct_user_low, direct_user_high)
    WHERE kind = 'direct';

CREATE TABLE memberships (
    thread_id           uuid        NOT NULL,
    user_id             uuid        NOT NULL,
    company_id          uuid        NOT NULL,
    joined_at           timestamptz NOT NULL DEFAULT now(),
    last_delivered_seq  bigint      NOT NULL DEFAULT 0,
    last_read_seq       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (thread_id, user_id),
    FOREIGN KEY (company_id, thread_id) REFERENCES threads (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, user_id) REFERENCES users (company_id, id) ON DELETE CASCADE,
    CHECK (last_read_seq >= 0),
    CHECK (last_read_seq <= last_delivered_seq)
);

-- chat:ready and GET /api/threads start from the user's memberships.
CREATE INDEX memberships_by_user ON memberships (user_id, thread_id);

-- Cursors never move backwards and never pass the thread's last_seq. The
-- UPDATE statements already clamp; this trigger makes the promise hold for
-- any writer, including a future one that forgets to.
CREATE FUNCTION memberships_guard_cursors() RETURNS trigger AS $$
DECLARE
    thread_last_seq bigint;
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.last_delivered_seq < OLD.last_delivered_seq
                             OR NEW.last_read_seq < OLD.last_read_seq) THEN
        RAISE EXCEPTION 'membership cursors never move backwards'
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT last_seq INTO thread_last_seq FROM threads WHERE id = NEW.thread_id;
    IF NEW.last_delivered_seq > thread_last_seq THEN
        RAISE EXCEPTION 'membership cursor beyond the thread''s last_seq'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER memberships_guard_cursors
    BEFORE INSERT OR UPDATE OF last_delivered_seq, last_read_seq ON memberships
    FOR EACH ROW EXECUTE FUNCTION memberships_guard_cursors();

CREATE TABLE messages (
    id             uuid        PRIMARY KEY,
    thread_id      uuid        NOT NULL,
    company_id     uuid        NOT NULL,
    seq            bigint      NOT NULL CHECK (seq > 0),
    sender_id      uuid        NOT NULL,
    client_msg_id  uuid        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('text', 'image', 'file', 'system')),
    body           text,
    metadata       jsonb,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    edited_at      timestamptz,
    deleted_at     timestamptz,
    FOREIGN KEY (company_id, thread_id) REFERENCES threads (company_id, id) ON DELETE CASCADE,
    FOREIGN KEY (company_id, sender_id) REFERENCES users (company_id, id),
    -- History pages, chat:sync, unread counts and last-message lookups all
    -- walk this index.
    UNIQUE (thread_id, seq),
    -- chat:send is idempotent per sender and client_msg_id, forever.
    UNIQUE (sender_id, client_msg_id),
    CHECK (deleted_at IS NULL OR (body IS NULL AND metadata IS NULL))
);
