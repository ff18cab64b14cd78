DROP TABLE message_changes;
DROP TABLE reactions;
DROP INDEX messages_by_rev;
ALTER TABLE messages
    DROP CONSTRAINT messages_rev_after_creation,
    DROP COLUMN mentions,
    DROP COLUMN reply_to,
    DROP COLUMN created_rev,
    DROP COLUMN rev;
ALTER TABLE threads DROP COLUMN last_rev;
