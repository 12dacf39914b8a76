"""Render a pattern's template into the C source of one variant, and diff the two variants."""

from __future__ import annotations

import difflib
import os
import threading
from typing import Any, Mapping

import jinja2

from . import facts
from .catalog import VARIANTS, Pattern
from .errors import CatalogError


def _coerce(value: Any, default: Any) -> Any:
    """Parameters given on a command line arrive as text; give them the default's type."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def resolve_params(pattern: Pattern, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    params = dict(pattern.params)
    for key, value in (overrides or {}).items():
        if key not in params:
            raise CatalogError(f"{pattern.id}: no parameter {key!r} (has: {', '.join(params) or 'none'})")
        try:
            params[key] = _coerce(value, params[key])
        except ValueError:
            raise CatalogError(f"{pattern.id}: parameter {key}={value!r} is not a {type(params[key]).__name__}") from None
    return params


class CompiledTemplates(jinja2.FileSystemBytecodeCache):
    """Templates compiled once and kept in the cache (jinja2 keys each by its source's hash and
    the Python and jinja2 versions): the catalog's and the report's.  A cache that cannot be
    written only costs the compile."""

    def dump_bytecode(self, bucket) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


_ENVIRONMENTS: dict[str, jinja2.Environment] = {}
_ENV_LOCK = threading.Lock()


def _environment(directory: str) -> jinja2.Environment:
    """One environment per pattern folder, kept: a template is compiled once per process (and
    read compiled from the cache after that), not once per variant and checker.  jinja2 still
    looks at the file each time and compiles it again when it changed."""
    with _ENV_LOCK:
        env = _ENVIRONMENTS.get(directory)
        if env is None:
            cache = facts.folder("templates")
            env = _ENVIRONMENTS[directory] = jinja2.Environment(
                loader=jinja2.FileSystemLoader(directory),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                autoescape=False,  # C source, not HTML
                bytecode_cache=CompiledTemplates(str(cache)) if cache is not None else None,
            )
        return env


def render(pattern: Pattern, variant: str, overrides: Mapping[str, Any] | None = None) -> str:
    if variant not in VARIANTS:
        raise CatalogError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    env = _environment(str(pattern.directory))
    try:
        template = env.get_template(pattern.template_path.name)
        return template.render(variant=variant, leaky=(variant == "leaky"),
                               **resolve_params(pattern, overrides))
    except jinja2.TemplateError as exc:
        where = f"{pattern.template_path}:{exc.lineno}" if getattr(exc, "lineno", None) else str(pattern.template_path)
        raise CatalogError(f"{where}: template error: {exc.message or exc}") from None


def diff(pattern: Pattern, overrides: Mapping[str, Any] | None = None) -> str:
    leaky = render(pattern, "leaky", overrides).splitlines(keepends=True)
    fixed = render(pattern, "fixed", overrides).splitlines(keepends=True)
    suffix = pattern.source_suffix  # .c, or .go for a Go pattern
    return "".join(difflib.unified_diff(leaky, fixed, f"{pattern.id}/leaky{suffix}", f"{pattern.id}/fixed{suffix}"))
