"""Name the stack frames a sanitizer runtime left as module+offset, with llvm-symbolizer.

A runtime leaves a report unsymbolized (`#1 0x55d0c3a4b7c7  (/path/prog+0x17c7)`, every frame)
when it cannot find a symbolizer, when it is told not to (symbolize=0), or when the exit-time
leak check runs after main left by pthread_exit.  The module and offset are all llvm-symbolizer
needs, so the parse stage names such frames afterwards: one llvm-symbolizer process per log,
fed every distinct "MODULE OFFSET" on a pipe, with a timeout.  Inlined calls become frames of
their own, as a runtime that symbolizes prints them.  When llvm-symbolizer is not installed,
or the module is gone or was rebuilt after the log was written (its name would lie), frames
are left as they were: the signature then names module+offset.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import shutil
import subprocess
from itertools import chain
from typing import Iterable, Sequence

from ..findings import AuxStack, Finding, Frame

SYMBOLIZER_TIMEOUT_S = 60.0
_FLAGS = ("--inlines", "--demangle", "--functions=linkage", "--output-style=LLVM")
# llvm-symbolizer's place is FILE:LINE:COLUMN; match from the right, a path may hold ":12".
_PLACE = re.compile(r"^(.*):(\d+):(\d+)$|^(.*):(\d+)$")


def find_symbolizer() -> str | None:
    """llvm-symbolizer on PATH, else the newest versioned one Debian installs."""
    found = shutil.which("llvm-symbolizer")
    if found:
        return found

    def version(path: str) -> int:
        m = re.search(r"(\d+)", os.path.basename(path) + os.path.dirname(path))
        return int(m.group(1)) if m else 0

    candidates = [p for p in glob.glob("/usr/lib/llvm-*/bin/llvm-symbolizer") if os.access(p, os.X_OK)]
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory:
            candidates += [p for p in glob.glob(os.path.join(directory, "llvm-symbolizer-[0-9]*"))
                           if os.access(p, os.X_OK)]
    return max(candidates, key=version, default=None)


def _wanted(frame: Frame) -> bool:
    return (frame.function is None and frame.file is None and frame.offset is not None
            and bool(frame.object) and os.path.isabs(frame.object))


def _usable(module: str, log_mtime: float | None) -> bool:
    if '"' in module or "\n" in module:
        return False  # cannot be written on llvm-symbolizer's input line
    try:
        st = os.stat(module)
    except OSError:
        return False
    # A module changed after the log was written is not the one that ran.
    return os.path.isfile(module) and (log_mtime is None or st.st_mtime <= log_mtime)


def _read_blocks(output: str) -> list[list[str]]:
    """One block per input line: pairs of (function, file:line:column) lines, innermost
    inlined call first, then a blank line."""
    blocks, current = [], []
    for line in output.split("\n"):
        if line:
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _frames_of(block: list[str], frame: Frame) -> tuple[Frame, ...] | None:
    frames = []
    for i in range(0, len(block) - 1, 2):
        name, place = block[i], block[i + 1]
        function = None if name == "??" else name
        file = line = None
        m = _PLACE.match(place)
        if m:
            path, number = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(4), m.group(5))
            if path != "??":
                file, line = path, int(number) or None
        if function is None and file is None:
            continue
        frames.append(dataclasses.replace(frame, function=function, file=file, line=line))
    return tuple(frames) or None


def symbolize(requests: Sequence[tuple[str, int]], symbolizer: str,
              timeout: float = SYMBOLIZER_TIMEOUT_S) -> tuple[dict[tuple[str, int], list[list[str]]], str | None]:
    """Ask one llvm-symbolizer process about every (module, offset); returns the answer
    blocks by request, and a problem when it failed."""
    data = "".join(f'"{module}" {offset:#x}\n' for module, offset in requests)
    env = dict(os.environ)
    env["DEBUGINFOD_URLS"] = ""  # never fetch debug info from the network
    try:
        proc = subprocess.run([symbolizer, *_FLAGS], input=data, capture_output=True, text=True,
                              errors="replace", timeout=timeout, env=env, start_new_session=True)
    except subprocess.TimeoutExpired:
        return {}, f"llvm-symbolizer timed out after {timeout:g} s: frames left as module+offset"
    except OSError as exc:
        return {}, f"llvm-symbolizer could not run ({exc.strerror or exc}): frames left as module+offset"
    blocks = _read_blocks(proc.stdout)
    if len(blocks) != len(requests):
        return {}, (f"llvm-symbolizer answered {len(blocks)} of {len(requests)} addresses"
                    f" (exit {proc.returncode}): frames left as module+offset")
    return dict(zip(requests, blocks)), None


def symbolize_findings(findings: Sequence[Finding], not_newer_than: str | None = None,
                       symbolizer: str | None = None) -> tuple[list[Finding], list[str]]:
    """The findings with their unsymbolized frames named, and the problems met.
    `not_newer_than`: the log file; a module modified after it is not used."""
    wanted: dict[tuple[str, int], None] = {}
    unnamed: list[bool] = []  # by finding: did the runtime leave all its frames unnamed?
    for finding in findings:
        frames = list(chain(finding.stack, *(a.frames for a in finding.aux_stacks)))
        # A runtime that symbolized a report named some of its frames; the ones it left (static
        # functions of a stripped libcrypto) have no name for llvm-symbolizer either: asking
        # would only cost a process per log.
        blank = bool(frames) and not any(fr.function or fr.file for fr in frames)
        unnamed.append(blank)
        if blank:
            for frame in frames:
                if _wanted(frame):
                    wanted[(frame.object, frame.offset)] = None
    if not wanted:
        return list(findings), []
    log_mtime = None
    if not_newer_than is not None:
        try:
            log_mtime = os.stat(not_newer_than).st_mtime
        except OSError:
            log_mtime = None
    usable: dict[str, bool] = {}
    requests = [key for key in wanted
                if usable.setdefault(key[0], _usable(key[0], log_mtime))]
    if not requests:
        return list(findings), []
    exe = symbolizer or find_symbolizer()
    if exe is None:
        return list(findings), []
    answers, problem = symbolize(requests, exe)
    if not answers:
        return list(findings), [problem] if problem else []

    named: dict[Frame, tuple[Frame, ...] | None] = {}

    def expand(frames: Iterable[Frame]) -> tuple[tuple[Frame, ...], bool]:
        out, changed = [], False
        for frame in frames:
            if _wanted(frame):
                if frame not in named:
                    block = answers.get((frame.object, frame.offset))
                    named[frame] = _frames_of(block, frame) if block else None
                new = named[frame]
                if new:
                    out.extend(new)
                    changed = True
                    continue
            out.append(frame)
        return tuple(out), changed

    result = []
    for finding, blank in zip(findings, unnamed):
        if not blank:
            result.append(finding)
            continue
        stack, changed = expand(finding.stack)
        aux = []
        for a in finding.aux_stacks:
            frames, aux_changed = expand(a.frames)
            aux.append(AuxStack(a.label, frames, a.text) if aux_changed else a)
            changed = changed or aux_changed
        if changed:
            # signature="": made again from the named frames, as for a symbolized log.
            finding = dataclasses.replace(finding, stack=stack, aux_stacks=tuple(aux), signature="")
        result.append(finding)
    return result, []
