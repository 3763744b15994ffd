"""Serf's application layer on top of membership, sans-IO (tags, intents, events, queries)."""
