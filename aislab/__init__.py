"""The lab: what the tests, the benchmarks and the demo use, and the product does not.

Network namespaces and shaped links, loop and slow disks, a demo RPM repository
built from spec files, a published demo cache, `ais serve` in a subprocess. Not
installed with AIS (pyproject.toml packages only `ais`); nothing in `ais/`
imports it (tests/unit/test_architecture.py checks). Run from a checkout:
`python -m pytest` and the scripts in bench/ put the checkout on sys.path.
"""
