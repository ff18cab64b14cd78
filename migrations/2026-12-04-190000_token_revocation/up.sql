-- Token revocation and deactivation (PROTOCOL.md, Edition 2): a user's
-- tokens whose `iat` lies before this instant are refused. It is always
-- a whole second (the revocation's second, rounded up), because `iat` is.
ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz;
