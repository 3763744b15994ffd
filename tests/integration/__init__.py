"""Integration tests: real sockets, real peers (serf, haproxy)."""
