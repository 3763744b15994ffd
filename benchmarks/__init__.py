"""Benchmark suites: ``python -m benchmarks SUITE --json PATH [suite options]``.

Each suite is a module ``benchmarks/<suite>.py`` with ``run(argv) -> dict``:
it prints its own table and returns a JSON-serialisable result.
"""
