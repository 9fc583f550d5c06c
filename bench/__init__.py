"""Benchmark harness: the data layer against raw drivers and SQLAlchemy on one private server.

Run `python -m bench` from the repository root (`--quick` for a one-minute smoke run,
`--help` for the rest). See bench/README.md for what is measured and how to read the table.
"""
