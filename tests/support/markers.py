"""Markers for running a subset (registered in pyproject.toml; the README's command runs everything).

- `postgres`: the PostgreSQL case of a test (set on the `database_url` parameter);
- `subprocess`: starts real `python -m bot` processes (set here for every test using `launch`);
- `slow`: takes seconds of its own (set on the test).

`-m "not postgres and not subprocess and not slow"` is the fast subset.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "launch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.subprocess)
