-- The unaccent extension stays: something else may use it by now.
DROP FUNCTION IF EXISTS directory_fold(text);
DROP INDEX IF EXISTS users_directory;
DROP INDEX IF EXISTS users_external_id_per_company;
ALTER TABLE users
    DROP COLUMN IF EXISTS external_id,
    DROP COLUMN IF EXISTS deactivated_at,
    DROP COLUMN IF EXISTS updated_at;
