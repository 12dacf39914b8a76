"""The registry of checkers: every checker leakharness can run, in the order reports list them.

A checker is one instance of the Checker type (base.py) in its family's module; the modules
are listed here, each giving its CHECKERS and its FAMILY (a key and the label the report groups
it under).  Adding a checker is a module and one line below.  Everything else asks the
registry: which checkers exist, which run on a pattern of a language by default, which a leaky
variant must state an expectation for, which `check --build` runs when no --tool is given.
"""

from __future__ import annotations

import importlib

from ..errors import LeakHarnessError
from .base import Checker

MODULES = (
    "valgrind",
    "sanitizers",
    "hardened",
    "residue",
    "go",
)

REGISTRY: dict[str, Checker] = {}
FAMILIES: dict[str, str] = {}  # family key -> its label, in the order the report shows them
for _name in MODULES:
    _module = importlib.import_module(f"{__name__}.{_name}")
    _key, _label = _module.FAMILY
    FAMILIES.setdefault(_key, _label)
    for _checker in _module.CHECKERS:
        if _checker.name in REGISTRY:
            raise RuntimeError(f"checker {_checker.name} is registered twice")
        REGISTRY[_checker.name] = _checker


def names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def get(name: str) -> Checker:
    try:
        return REGISTRY[name]
    except KeyError:
        raise LeakHarnessError(f"unknown checker {name!r} (one of {', '.join(REGISTRY)})") from None


def known(name: str) -> bool:
    return name in REGISTRY


def for_language(language: str) -> tuple[str, ...]:
    """Every checker that can check a program of that language."""
    return tuple(n for n, c in REGISTRY.items() if language in c.languages)


def defaults(language: str) -> tuple[str, ...]:
    """The checkers every catalog pattern of that language runs under."""
    return tuple(n for n, c in REGISTRY.items() if language in c.default_for)


def required(language: str) -> tuple[str, ...]:
    """The checkers a leaky variant of that language must state an expectation for."""
    return tuple(n for n, c in REGISTRY.items() if language in c.required_for)


def check_defaults(language: str) -> tuple[str, ...]:
    """What `check --build` runs when no --tool is given."""
    return tuple(n for n, c in REGISTRY.items() if language in c.check_default_for)


def for_program(name: str, language: str) -> str | None:
    """The checker `name` stands for on a program of that language: itself when it checks that
    language, else its twin there (asan on a Go program is go-asan), else None."""
    checker = get(name)
    if language in checker.languages:
        return name
    twin = checker.twins.get(language)
    return twin if twin in REGISTRY and language in REGISTRY[twin].languages else None


def family_of(name: str) -> str:
    return REGISTRY[name].family if name in REGISTRY else "other"


def of_log_tool(tool: str | None) -> str | None:
    """The checker whose logs name this tool (a raw log handed to `report`), or None."""
    return next((n for n, c in REGISTRY.items() if tool and tool in c.log_tools), None)


def order_key(name: str) -> tuple[int, str]:
    """Sort checkers in the registry's order, unknown ones last."""
    order = list(REGISTRY)
    return (order.index(name) if name in order else len(order), name)
