DROP INDEX IF EXISTS messages_by_upload;
DROP TABLE IF EXISTS uploads;
