"""The trio agent runtime: sockets, timers, event-handler scripts, snapshot, signals."""
