"""Wiring only: load the harness plugin when the package is not installed (a fresh clone).

Installed (``pip install -e .``), pytest loads it through the ``pytest11`` entry point.
"""

from importlib.metadata import entry_points

if not any(ep.name == "multiconnect_chaos" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["harness.pytest_plugin.plugin"]
