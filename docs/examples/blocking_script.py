"""A plain script (no async) that joins a cluster, announces itself, and watches.

    python docs/examples/blocking_script.py --name script-1 --bind 127.0.0.1:7948 \
        --join 127.0.0.1:7946 --watch 10

It prints the members, sends a ``hello`` user event, prints the events it
sees for ``--watch`` quiet seconds, then leaves gracefully.
"""

from __future__ import annotations

import argparse

import swimlib.blocking
from swimlib.agent.addresses import split_host_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", default="0.0.0.0:7946")
    parser.add_argument("--join", action="append", default=[])
    parser.add_argument("--watch", type=float, default=5.0, help="quiet seconds before leaving")
    args = parser.parse_args()

    with swimlib.blocking.open_agent(args.name, bind=split_host_port(args.bind, 7946),
                                     join=args.join) as agent:
        for member in agent.members():
            print(f"member {member.name} {member.status_name}", flush=True)
        agent.user_event("hello", args.name.encode())
        for event in agent.events(timeout=args.watch):
            print(f"event {event}", flush=True)
    print("left", flush=True)


if __name__ == "__main__":
    main()
