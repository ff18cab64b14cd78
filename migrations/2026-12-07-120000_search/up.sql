-- Search (PROTOCOL.md, Edition 2): full-text search over message bodies.
--
-- The words of a body, kept by Postgres itself: a generated column is
-- recomputed on every insert and every edit, and a deletion (body NULL)
-- leaves it empty, so nothing can forget to re-index.
--
-- One fixed configuration, 'english': English word forms are stemmed
-- ("running" finds "run") and English stop words ("the", "a") are not
-- indexed; text in another language still matches word for word, as the
-- same stemmer reads both the body and the query. A per-company language
-- would need the configuration stored on every message; not worth it yet.
--
-- `<`, `>` and `&` are read as spaces: the default parser takes `<...>`
-- for an HTML tag and `&...;` for an entity and indexes neither, which
-- would hide the words of "x<y and z>w" or of code in a chat message.
-- \x01 and \x02 are read as spaces too (they separate words anyway): the
-- highlighter uses them as markers, so no body may bring its own (see
-- src/persistence/search.rs). translate() maps one character to one, so
-- positions in this text are positions in the body.
ALTER TABLE messages
    ADD COLUMN search_words tsvector GENERATED ALWAYS AS (
        to_tsvector('english'::regconfig,
                    translate(coalesce(body, ''), E'<>&\x01\x02', '     '))
    ) STORED;

-- Deleted messages never match: they are left out of the index, and the
-- search names the same predicate so the planner can use it.
CREATE INDEX messages_search_words ON messages USING gin (search_words)
    WHERE deleted_at IS NULL;

-- The planner chooses between that index (good for rare words) and
-- walking the primary key newest first (good for common ones) by how
-- common it thinks each word is. With the default statistics it knows
-- only the most common few hundred words and takes every other word for
-- fairly common: a word in no message at all then had a search walk the
-- whole table (0.5-1.2 s over 1,000,000 messages, against 25 ms through
-- the index). Ten times the sample makes ANALYZE of this column slower
-- and the estimates for rare words right.
ALTER TABLE messages ALTER COLUMN search_words SET STATISTICS 1000;
