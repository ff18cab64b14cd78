-- People (PROTOCOL.md, Edition 2): the host application's own id for a
-- user, deactivation, and when a user last changed.

ALTER TABLE users
    ADD COLUMN external_id     text CHECK (external_id IS NULL OR length(external_id) BETWEEN 1 AND 200),
    ADD COLUMN deactivated_at  timestamptz,
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();

-- Users that existed before were last changed when they were made.
UPDATE users SET updated_at = created_at;

-- The host application's id names one user per company; many have none.
CREATE UNIQUE INDEX users_external_id_per_company
    ON users (company_id, external_id)
    WHERE external_id IS NOT NULL;

-- The directory walks a company's active users in this order (keyset
-- paging compares the same expression, so the order is independent of
-- the database's locale).
CREATE INDEX users_directory
    ON users (company_id, (lower(display_name) COLLATE "C"), id)
    WHERE deactivated_at IS NULL;

-- Directory search ignores case, and accents where the `unaccent`
-- extension can be had: it is a trusted extension (PostgreSQL 13+), so
-- the database's owner may create it, but a server without the contrib
-- package lacks it, and then search ignores case only.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS unaccent;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'unaccent is not available (%): directory search ignores case only', SQLERRM;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'unaccent') THEN
        CREATE FUNCTION directory_fold(name text) RETURNS text
            LANGUAGE sql STABLE STRICT PARALLEL SAFE
            AS 'SELECT lower(unaccent(name))';
    ELSE
        CREATE FUNCTION directory_fold(name text) RETURNS text
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS 'SELECT lower(name)';
    END IF;
END
$$;
