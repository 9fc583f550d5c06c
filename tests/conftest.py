"""Fixtures live in tests/plugins/ (loaded by pytest's -p option in pyproject.toml)."""
