-- A message's creation is no longer logged in message_changes when it is
-- sent: the read-back finds a message that has not changed since its
-- creation through messages_by_rev (its rev is still its created_rev), and
-- the first later change of a message logs the creation row it then needs
-- (see log_change). Sends write one row and one index entry fewer.
-- Creation rows of messages that never changed are now redundant.
DELETE FROM message_changes c
USING messages m
WHERE c.kind = 'created' AND m.id = c.message_id AND m.rev = m.created_rev;
