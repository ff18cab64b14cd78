-- Files sent with POST /api/uploads. The bytes live in the configured
-- storage under files/<id> (and thumbnails/<id>); this row is their only
-- index, written after the bytes and deleted before them.
CREATE TABLE uploads (
    id            uuid        PRIMARY KEY,
    company_id    uuid        NOT NULL REFERENCES companies (id),
    uploader_id   uuid        NOT NULL REFERENCES users (id),
    name          text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    size          bigint      NOT NULL CHECK (size >= 0),
    mime          text        NOT NULL,
    sha256        text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    thumbnail_mime text       NULL CHECK (thumbnail_mime IN ('image/png', 'image/jpeg')),
    thumbnail_size bigint     NULL CHECK (thumbnail_size >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- When the upload was made or last named by a chat:send: the garbage
    -- collector leaves alone what was touched within its grace period.
    last_sent_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((thumbnail_mime IS NULL) = (thumbnail_size IS NULL))
);

CREATE INDEX uploads_by_last_sent ON uploads (last_sent_at);

-- Who may read an upload: members of a thread holding a live message that
-- carries it. A deleted message's metadata is NULL, so it drops out.
CREATE INDEX messages_by_upload ON messages ((metadata ->> 'upload_id'))
    WHERE metadata ? 'upload_id';
