"""Source paths as a person knows them, not as the build cache names them.

Sources are compiled in the build cache (<cache>/builds/<2 hex>/<key>/<file>), and debug info,
hence every stack, names them there: a report shows `ssl_error_path-leaky.c`, and a file under
the project folder relative to it (`src/app.c`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

_BUILD_DIR = re.compile(r"(?:^|/)builds/[0-9a-f]{2}/[0-9a-f]{16,}/(.+)$")


def build_cache_name(path: str | None) -> str | None:
    """The file name a build-cache path stands for (`ssl_error_path-leaky.c`), else None."""
    m = _BUILD_DIR.search(path or "")
    return m.group(1) if m else None


def display_path(path: str | None, root: Path | None = None) -> str:
    """`ssl_error_path-leaky.c` for a file compiled in the build cache, `src/app.c` for one
    under the project folder (`root`, by default the current one), anything else unchanged."""
    if not path:
        return ""
    name = build_cache_name(path)
    if name:
        return name
    if os.path.isabs(path):
        try:
            return str(Path(path).relative_to(root or Path.cwd()))
        except ValueError:
            return path
    return path
