"""An asyncio web app that is a cluster member: it joins at start-up and serves /members.

    pip install 'swimlib[web]'
    python docs/examples/asyncio_web.py --name web-1 --bind 127.0.0.1:7946 \
        --http 127.0.0.1:8080 --join 127.0.0.1:7947

GET /members answers with the cluster as this member sees it (JSON). On
SIGINT/SIGTERM the app leaves the cluster gracefully before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

import swimlib
from swimlib.agent.addresses import split_host_port

AGENT = web.AppKey("agent", swimlib.Agent)


def member_json(member: swimlib.ClusterMember) -> dict[str, object]:
    return {"name": member.name, "addr": f"{member.addr}:{member.port}",
            "status": member.status_name, "tags": dict(member.tag_map)}


async def members(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    return web.json_response([member_json(m) for m in agent.members()])


def make_app(args: argparse.Namespace) -> web.Application:
    app = web.Application()
    app.router.add_get("/members", members)

    async def cluster_member(app: web.Application) -> AsyncIterator[None]:
        """The agent lives as long as the app: joined at start-up, left at shutdown."""
        async with swimlib.open_agent(args.name, bind=split_host_port(args.bind, 7946),
                                      join=args.join, tags={"role": "web"}) as agent:
            app[AGENT] = agent
            yield
            with contextlib.suppress(swimlib.SwimError):
                await agent.leave()

    app.cleanup_ctx.append(cluster_member)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--bind", default="0.0.0.0:7946")
    parser.add_argument("--http", default="127.0.0.1:8080")
    parser.add_argument("--join", action="append", default=[])
    args = parser.parse_args()
    host, port = split_host_port(args.http, 8080)
    web.run_app(make_app(args), host=host, port=port, print=None)


if __name__ == "__main__":
    main()
