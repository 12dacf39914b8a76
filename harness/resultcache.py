"""The result cache: a job whose inputs have not changed is not run again.

The key covers what can change a checker's verdict on a binary: the binary itself, every
shared library it loads (libssl, libcrypto, libc, the sanitizer runtime), the checker, its
version and options (valgrind's suppression file included), and the program's arguments,
environment and timeout.  A new OpenSSL or compiler changes the key of what it touches.
Timeouts are not cached: they may come from a busy machine rather than the program.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .findings import Finding
from .run import SANITIZER_ENV, SUPPRESSIONS, VALGRIND_OPTIONS, Job, RunResult

_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
CACHEABLE = ("ok", "crashed")


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    st = os.stat(path)
    return _file_hash(os.path.realpath(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=1024)
def _libraries(binary: str, mtime_ns: int) -> tuple[str, ...]:
    try:
        proc = subprocess.run(["ldd", binary], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(sorted({m.group(1) for m in _LDD_LINE.finditer(proc.stdout)}))


def _ld_cache_stamp() -> str:
    try:
        st = os.stat("/etc/ld.so.cache")
        return f"{st.st_mtime_ns}-{st.st_size}"
    except OSError:
        return "none"


def libraries(binary: Path, cache_dir: Path | None = None) -> tuple[str, ...]:
    """The shared libraries the dynamic loader resolves for binary (ldd).  Remembered on disk
    by the binary's hash and the loader cache's stamp: ldd costs a process per binary, most of
    the time of a cached job.  The libraries' own contents are hashed afresh every time."""
    record = None
    if cache_dir is not None:
        record = Path(cache_dir) / "libs" / f"{file_hash(binary)}-{_ld_cache_stamp()}.json"
        try:
            return tuple(json.loads(record.read_text()))
        except (OSError, ValueError):
            pass
    libs = _libraries(os.path.realpath(binary), os.stat(binary).st_mtime_ns)
    if record is not None and libs:
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            tmp = record.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(libs))
            os.replace(tmp, record)
        except OSError:
            pass
    return libs


@functools.lru_cache(maxsize=None)
def tool_version(runtime: str) -> str:
    if runtime != "memcheck":
        return runtime  # a sanitizer's runtime is a shared library: hashed with the others
    path = shutil.which("valgrind")
    if not path:
        return "valgrind-missing"
    try:
        return subprocess.run([path, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30, start_new_session=True).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "valgrind-unknown"


def job_key(job: Job, cache_dir: Path | None = None) -> str | None:
    program = Path(job.command[0])
    if not program.is_file():
        return None
    h = hashlib.sha256()

    def add(*parts) -> None:
        for part in parts:
            h.update(str(part).encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    add("leakharness-result-1", file_hash(program), job.checker, tool_version(job.runtime))
    for lib in libraries(program, cache_dir):
        add("lib", os.path.basename(lib), file_hash(lib) if os.path.exists(lib) else "missing")
    if job.runtime == "memcheck":
        add("valgrind", *VALGRIND_OPTIONS, file_hash(SUPPRESSIONS))
    else:
        add("sanitizer", *(f"{k}={v}" for k, v in sorted(SANITIZER_ENV.items())))
        for var in SANITIZER_ENV:  # the user's own sanitizer options change what is reported
            add(var, os.environ.get(var, ""))
    add("args", *job.command[1:], "env", *(f"{k}={v}" for k, v in job.env), "timeout", job.timeout)
    return h.hexdigest()


def _result_to_dict(result: RunResult) -> dict:
    return {
        "status": result.status, "exit_code": result.exit_code, "signal": result.signal,
        "duration_s": result.duration_s, "partial": result.partial, "problems": list(result.problems),
        "message": result.message, "logs": [p.name for p in result.logs],
        "findings": [f.to_dict() for f in result.findings],
    }


class ResultCache:
    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.root = self.cache_dir / "results"

    def get(self, key: str | None, job: Job) -> RunResult | None:
        """The cached result of key, its logs copied into the job's folder; None on a miss."""
        if key is None:
            return None
        entry = self.root / key[:2] / key
        try:
            data = json.loads((entry / "result.json").read_text())
        except (OSError, ValueError):
            return None
        job.out_dir.mkdir(parents=True, exist_ok=True)
        logs = []
        for name in data.get("logs", ()):
            src = entry / name
            if src.is_file():
                shutil.copyfile(src, job.out_dir / name)
                logs.append(job.out_dir / name)
        renamed = {str(entry / name): str(job.out_dir / name) for name in data.get("logs", ())}
        findings = []
        for raw in data.get("findings", ()):
            f = Finding.from_dict(raw)
            if f.source:
                f = dataclasses.replace(f, source=renamed.get(f.source, job.out_dir / os.path.basename(f.source)).__str__())
            findings.append(f)
        return RunResult(job, data["status"], tuple(findings), exit_code=data.get("exit_code"),
                         signal=data.get("signal"), duration_s=float(data.get("duration_s", 0)),
                         logs=tuple(logs), partial=bool(data.get("partial")),
                         problems=tuple(data.get("problems", ())), message=data.get("message", ""))

    def put(self, key: str | None, result: RunResult, known_hang: bool = False) -> None:
        """Store a result.  A timeout is stored only for a known hang (a checker the pattern
        says is blind there): otherwise it may be the machine's load, not the program."""
        if key is None or not (result.status in CACHEABLE or (known_hang and result.status == "timeout")):
            return
        entry = self.root / key[:2] / key
        if entry.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".put.", dir=self.root))
        try:
            for log in result.logs:
                if log.is_file():
                    shutil.copyfile(log, work / log.name)
            data = _result_to_dict(result)
            names = {str(log): str(entry / log.name) for log in result.logs}
            for f in data["findings"]:
                if f.get("source") in names:
                    f["source"] = names[f["source"]]
            (work / "result.json").write_text(json.dumps(data))
            entry.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(work, entry)
            except OSError:
                pass  # another process cached the same result first
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
