"""The `leakharness` command: argument parsing and output only; the work is in the stages.

Errors a user can cause (LeakHarnessError) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import LeakHarnessError


def _write_findings_json(logs, out) -> None:
    """Stream findings as one JSON list.  Frames are shared between findings by the
    parser, so their JSON is made once per frame object."""
    frame_json: dict[int, str] = {}
    dumps = json.dumps
    out.write("[")
    first = True
    for log in logs:
        for finding in log.findings:
            data = finding.to_dict()
            parts = []
            for key in ("stack",):
                frames = []
                for frame in finding.stack:
                    text = frame_json.get(id(frame))
                    if text is None:
                        text = frame_json[id(frame)] = dumps(frame.to_dict())
                    frames.append(text)
                data[key] = None
                parts.append("[" + ", ".join(frames) + "]")
            text = dumps(data).replace('"stack": null', '"stack": ' + parts[0], 1)
            out.write(("\n" if first else ",\n") + text)
            first = False
    out.write("\n]\n" if not first else "]\n")


def _write_findings_text(logs, out) -> None:
    rows = []
    for log in logs:
        for f in log.findings:
            what = f.category + (f" ({f.leak_kind})" if f.leak_kind else "")
            size = "" if f.bytes is None else str(f.bytes + f.indirect_bytes)
            rows.append((what, size, f.summary().split(" at ", 1)[-1] if " at " in f.summary() else "",
                         os.path.basename(f.source or "")))
    if not rows:
        out.write("no findings\n")
        return
    header = ("category", "bytes", "where (program's own frames first)", "log")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:>{widths[1]}}}  {{:<{widths[2]}}}  {{}}\n"
    out.write(fmt.format(*header))
    for r in rows:
        out.write(fmt.format(*r))
    out.write(f"{len(rows)} finding(s)\n")


def cmd_parse(args) -> int:
    from .parse import parse_files

    logs, errors = parse_files(args.files)
    if args.format == "json":
        _write_findings_json(logs, sys.stdout)
    else:
        _write_findings_text(logs, sys.stdout)
    sys.stdout.flush()
    for log in logs:
        if log.partial or log.problems:
            note = "; ".join(log.problems) or "cut short"
            print(f"leakharness: {log.path}: partial: {note}; kept {len(log.findings)} finding(s)",
                  file=sys.stderr)
    for err in errors:
        print(f"leakharness: {err}", file=sys.stderr)
    return 2 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leakharness",
        description="Find, compare and report memory errors in C programs that use OpenSSL.",
    )
    parser.add_argument("--version", action="version", version=f"leakharness {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("parse", help="turn valgrind XML files and sanitizer logs into findings")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("json", "text"), default="json")
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser("list", help="list the patterns of the catalog")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="print a pattern's rendered source, or its leaky-to-fixed diff")
    p.add_argument("pattern", metavar="ID")
    p.add_argument("--variant", choices=("leaky", "fixed"), default="leaky")
    p.add_argument("--diff", action="store_true", help="the fix, as a unified diff from leaky to fixed")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a template parameter (repeatable), e.g. --param iterations=4")
    p.add_argument("--fixtures", type=Path, help="a fixtures folder other than the built-in catalog")
    p.set_defaults(func=cmd_show)
    return parser


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LeakHarnessError(f"--param {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def cmd_list(args) -> int:
    from .catalog import load_catalog

    patterns = load_catalog(args.fixtures)
    width = max((len(p.id) for p in patterns), default=2)
    print(f"{'id':<{width}}  {'variants':<11}  {'checkers':<40}  title")
    for p in patterns:
        print(f"{p.id:<{width}}  {'leaky,fixed':<11}  {','.join(p.checkers()):<40}  {p.title}")
    print(f"{len(patterns)} pattern(s)")
    return 0


def cmd_show(args) -> int:
    from .catalog import load_catalog
    from .generate import diff, render

    (pattern,) = load_catalog(args.fixtures, ids=[args.pattern])
    params = _params(args.param)
    sys.stdout.write(diff(pattern, params) if args.diff else render(pattern, args.variant, params))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LeakHarnessError as exc:
        print(f"leakharness: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `leakharness parse ... | head`: the reader left; that is not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("leakharness: interrupted", file=sys.stderr)
        return 130
