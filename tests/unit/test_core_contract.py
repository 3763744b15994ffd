"""Every core and every stand-in for one offers the whole Core contract."""

from __future__ import annotations

import inspect

import pytest

from simulations.serfnode import SerfNode
from swimlib.cluster.serf import Serf
from swimlib.core import Core
from swimlib.membership.node import Node
from tests.sim.fakenode import FakeNode

CONTRACT = {name: inspect.signature(member) for name, member in vars(Core).items()
            if callable(member) and not name.startswith("_")}


def test_the_contract_is_what_drivers_use() -> None:
    assert set(CONTRACT) == {"handle_packet", "handle_unreachable", "handle_stream",
                             "handle_stream_reply", "tick", "next_deadline",
                             "take_effects", "join", "leave"}


@pytest.mark.parametrize("core", [Node, Serf, SerfNode, FakeNode])
def test_core_offers_every_call_with_the_same_parameters(core: type) -> None:
    for name, wanted in CONTRACT.items():
        method = getattr(core, name, None)
        assert method is not None, f"{core.__name__} lacks {name}"
        params = list(inspect.signature(method).parameters)
        assert params[:len(wanted.parameters)] == list(wanted.parameters), (core, name)
