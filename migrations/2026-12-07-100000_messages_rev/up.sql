-- Richer messages (PROTOCOL.md, Edition 2, "Messages"): replies, mentions,
-- reactions, and `rev`, a second per-thread counter that numbers every
-- change to a thread's messages (new, edit, delete, reaction on or off).

-- Highest rev handed out in this thread. As for last_seq: incremented under
-- the thread's row lock in the transaction that makes the change, so revs
-- are gapless and follow commit order.
ALTER TABLE threads
    ADD COLUMN last_rev bigint NOT NULL DEFAULT 0 CHECK (last_rev >= 0);

ALTER TABLE messages
    -- The rev of the message's latest change: the change feed walks it.
    ADD COLUMN rev          bigint,
    -- The rev it was created at. Never changes; seq and created_rev grow
    -- together. The hub's read-back uses it to announce a new message
    -- whose own announcement was lost at its place in the rev order.
    ADD COLUMN created_rev  bigint,
    ADD COLUMN reply_to     uuid REFERENCES messages (id) ON DELETE SET NULL,
    -- In the order the sender gave them.
    ADD COLUMN mentions     uuid[] NOT NULL DEFAULT '{}';

-- Existing messages: a message never changed was created at rev = seq (new
-- messages were the only changes counted so far). Edited or deleted ones
-- get one rev each after the thread's last seq, in the order of their
-- latest change, so every thread's revs stay gapless.
UPDATE messages SET created_rev = seq, rev = seq;

WITH changed AS (
    SELECT m.id, t.last_seq
                 + row_number() OVER (PARTITION BY m.thread_id
                                      ORDER BY coalesce(m.deleted_at, m.edited_at), m.seq) AS rev
    FROM messages m JOIN threads t ON t.id = m.thread_id
    WHERE m.edited_at IS NOT NULL OR m.deleted_at IS NOT NULL
)
UPDATE messages SET rev = changed.rev FROM changed WHERE messages.id = changed.id;

UPDATE threads SET last_rev = last_seq
    + (SELECT count(*) FROM messages m
       WHERE m.thread_id = threads.id AND (m.edited_at IS NOT NULL OR m.deleted_at IS NOT NULL));

ALTER TABLE messages
    ALTER COLUMN rev SET NOT NULL,
    ALTER COLUMN created_rev SET NOT NULL,
    ADD CONSTRAINT messages_rev_after_creation CHECK (created_rev > 0 AND rev >= created_rev);

-- chat:changes and GET /api/threads/{id}/changes walk this index; unique,
-- because a rev names one change.
CREATE UNIQUE INDEX messages_by_rev ON messages (thread_id, rev);

-- One row per (message, emoji, user). `since` is the rev at which the emoji
-- (last) entered the message's list, shared by all its rows: the list's
-- order. `added` is the rev of this user's reaction: the order of user_ids.
CREATE TABLE reactions (
    message_id  uuid    NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji       text    NOT NULL CHECK (octet_length(emoji) BETWEEN 1 AND 32),
    user_id     uuid    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    since       bigint  NOT NULL,
    added       bigint  NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

-- What each rev was: one row per change, written in the transaction that
-- makes it. The messages table keeps only each message's current state, so
-- a rev superseded by a later change of the same message would otherwise
-- be lost; the hub's read-back (a bus message lost, a node cut off) needs
-- to know which message every missed rev changed, and a reaction's detail.
-- No foreign key: the row is written with the change it names, and a
-- check per change would cost the hot path for nothing.
CREATE TABLE message_changes (
    thread_id    uuid    NOT NULL,
    rev          bigint  NOT NULL CHECK (rev > 0),
    message_id   uuid    NOT NULL,
    kind         text    NOT NULL CHECK (kind IN ('created', 'edited', 'deleted', 'reaction')),
    -- A reaction's detail.
    user_id      uuid,
    emoji        text,
    reaction_on  boolean,
    PRIMARY KEY (thread_id, rev),
    CHECK ((kind = 'reaction') = (user_id IS NOT NULL AND emoji IS NOT NULL
                                  AND reaction_on IS NOT NULL))
);

INSERT INTO message_changes (thread_id, rev, message_id, kind)
SELECT thread_id, created_rev, id, 'created' FROM messages
UNION ALL
SELECT thread_id, rev, id, CASE WHEN deleted_at IS NOT NULL THEN 'deleted' ELSE 'edited' END
FROM messages WHERE rev <> created_rev;
