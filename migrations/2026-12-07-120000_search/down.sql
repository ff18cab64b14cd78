DROP INDEX messages_search_words;
ALTER TABLE messages DROP COLUMN search_words;
