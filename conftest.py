"""Wires the leakharness pytest plugin for this repository.

Installed (pip install -e .), the plugin comes from the package's pytest11 entry point; a
checkout used without installing gets it from here.  c_fixtures/ is in testpaths
(pyproject.toml), so every pattern folder becomes catalog items.
"""

import importlib.metadata

if not any(ep.name == "leakharness" for ep in importlib.metadata.entry_points(group="pytest11")):
    pytest_plugins = ["harness.pytest_plugin"]
