DROP TABLE messages;
DROP TRIGGER memberships_guard_cursors ON memberships;
DROP FUNCTION memberships_guard_cursors();
DROP TABLE memberships;
DROP TABLE threads;
DROP TABLE users;
DROP TABLE companies;
