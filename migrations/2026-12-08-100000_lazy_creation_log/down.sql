-- Back to one creation row per message.
INSERT INTO message_changes (thread_id, rev, message_id, kind)
SELECT thread_id, created_rev, id, 'created' FROM messages
ON CONFLICT (thread_id, rev) DO NOTHING;
