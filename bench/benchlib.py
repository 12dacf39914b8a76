"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import platform
import re
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            m = re.search(r"^model name\s*:\s*(.+)$", fh.read(), re.M)
            if m:
                return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "?"


def tool_version(argv: list[str], default: str) -> str:
    """The first line a tool prints for its version, or default."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL).stdout.strip()
        return out.splitlines()[0] if out else default
    except (OSError, subprocess.TimeoutExpired):
        return default
