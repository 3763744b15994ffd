"""The same library under trio: join, answer queries, print membership changes.

    python docs/examples/trio_example.py --name trio-1 --bind 127.0.0.1:7949 \
        --join 127.0.0.1:7946

It answers every ``whoami`` query with its name, prints member events, and
leaves gracefully on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal

import trio

import swimlib
from swimlib.agent.addresses import split_host_port


async def serve(agent: swimlib.Agent) -> None:
    async with agent.events() as events:
        async for event in events:
            if isinstance(event, swimlib.QueryEvent) and event.name == "whoami":
                await agent.respond(event.id, agent.name.encode())
            elif isinstance(event, swimlib.MemberEvent):
                names = ", ".join(m.name for m in event.members)
                print(f"{event.type.value}: {names}", flush=True)


async def main(args: argparse.Namespace) -> None:
    async with swimlib.open_agent(args.name, bind=split_host_port(args.bind, 7946),
                                  join=args.join) as agent:
        print(f"joined as {agent.name}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve, agent)
                async for _ in signals:
                    break
                nursery.cancel_scope.cancel()
        await agent.leave()
    print("left", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", default="0.0.0.0:7946")
    parser.add_argument("--join", action="append", default=[])
    trio.run(main, parser.parse_args())
