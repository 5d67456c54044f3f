"""The change feed: other services learn what changed from the event log.

- webhooks.py: per-tenant subscriptions (add, list, remove, test, resume, redeliver) and their
  delivery — signed (signing.py), at least once, retried with exponential backoff, paused after
  repeated failures, logged per subscription;
- nats.py: publishing every event to NATS JetStream, de-duplicated by message id;
- relay.py: the loop behind `bastion relay` that drives both, woken by PostgreSQL's
  LISTEN/NOTIFY or polling SQLite.

Storage is bastion.store.feed (`tenant.feed`); docs/feed.md describes the wire formats.
"""
