DROP TABLE vapid_keys;
DROP TABLE push_deliveries;
DROP TABLE push_subscriptions;
DROP TABLE pending_notifications;
