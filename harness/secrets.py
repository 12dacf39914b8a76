"""Secrets: the bytes a checker looks for in freed memory (the residue checker's canaries), as
given on the command line (--secret HEX, --secrets-file FILE) or declared by a pattern
(`secrets = ["hex", ...]` in pattern.toml, planted by its template).  One-line errors for
anything the interposer would refuse.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Iterable

from .errors import LeakHarnessError

MIN_SECRET_BYTES = 8  # shorter ones match by chance
MAX_SECRET_BYTES = 1024
MAX_SECRETS = 64
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def secret_hex(secrets: Iterable[str | bytes], where: str = "--secret") -> str:
    """The canaries as LH_RESIDUE_SECRETS wants them: hex, comma-separated.  Text is taken as
    hex; bytes as they are.  One-line errors for anything the interposer would refuse."""
    out: list[str] = []
    for value in secrets:
        if isinstance(value, bytes):
            text = value.hex()
        else:
            text = value.strip().lower()
            if text.startswith("0x"):
                text = text[2:]
            if not _HEX.match(text):
                raise LeakHarnessError(f"{where} {value!r}: not hex (two digits per byte)")
        size = len(text) // 2
        if size < MIN_SECRET_BYTES:
            raise LeakHarnessError(f"{where} {value!r}: {size} bytes; a secret needs at least "
                                   f"{MIN_SECRET_BYTES} (shorter ones match by chance)")
        if size > MAX_SECRET_BYTES:
            raise LeakHarnessError(f"{where}: a secret of {size} bytes; at most {MAX_SECRET_BYTES}")
        if text not in out:
            out.append(text)
    if not out:
        raise LeakHarnessError(f"{where}: no secret given: the residue checker needs the bytes to look for")
    if len(out) > MAX_SECRETS:
        raise LeakHarnessError(f"{where}: {len(out)} secrets; at most {MAX_SECRETS}")
    return ",".join(out)


def read_secrets_file(path: str | os.PathLike) -> list[str]:
    """A file of secrets: one hex string a line; blank lines and `#` comments are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LeakHarnessError(f"{path}: cannot read the secrets: {getattr(exc, 'strerror', None) or exc}") from None
    secrets = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            secret_hex([line], where=f"{path}:{number}:")
            secrets.append(line)
    if not secrets:
        raise LeakHarnessError(f"{path}: no secret in the file (one hex string a line)")
    return secrets


def pattern_secrets(directory: str | os.PathLike) -> list[str]:
    """The canaries a pattern declares: `secrets = ["hex", ...]` at the top of its pattern.toml
    (the template plants the same bytes).  [] when it declares none."""
    meta_path = Path(directory) / "pattern.toml"
    try:
        meta = tomllib.loads(meta_path.read_text(encoding="utf-8"))
    except RecursionError:
        raise LeakHarnessError(f"{meta_path}: not valid TOML: nested too deep") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LeakHarnessError(f"{meta_path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    value = meta.get("secrets", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LeakHarnessError(f"{meta_path}: secrets must be a list of hex strings, not {value!r}")
    if value:
        secret_hex(value, where=f"{meta_path}: secrets:")
    return list(value)
