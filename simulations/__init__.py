"""Deterministic cluster simulator: many sans-IO swimlib nodes on one virtual clock.

``python -m simulations run SCENARIO --nodes N --seed S --json`` runs one of
the scenarios in :mod:`simulations.scenarios`; ``python -m simulations demo``
narrates a crash in a 50-node cluster.
"""

from simulations.engine import Simulation
from simulations.network import Network
from simulations.scenarios import SCENARIOS, Options, run_scenario

__all__ = ["SCENARIOS", "Network", "Options", "Simulation", "run_scenario"]
