"""What `parse --format json` prints: every finding as Finding.to_dict() would give it, in one JSON
list, written as the findings come (a stream of any length in bounded memory).

The text is exactly what json.dumps makes of to_dict() (the same keys in the same order, the
same separators and escapes; tests/test_cli_parse.py holds the two side by side), made faster
for big logs: a frame's and a whole stack's JSON are made once (the valgrind parser shares
both), and the rest of a finding is put together from its fields.
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii
from typing import IO, Iterable

from ..findings import Finding, Frame
from ..memo import MISSING, IdentityMemo

# Findings are written in pieces of about this many characters: a piece (and its encoded copy)
# stays below the C library's threshold for taking memory straight from the kernel (128 KiB), so
# its memory is reused, not mapped and faulted in afresh each time (a third of a big parse's
# system time: 0.21 s of system time for 50,000 findings in pieces of 700 KB, 0.07 s in these).
_BATCH_CHARS = 48 * 1024
_REMEMBERED = 200_000  # frames and stacks whose JSON is kept; forgotten all at once beyond
_FRAMES: dict[tuple, str] = {}  # a frame's fields -> its JSON, for every writer of the process


def _str(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _num(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _hex(value: int | None) -> str:
    return "null" if value is None else '"' + hex(value) + '"'


def frame_json(fr: Frame) -> str:
    return (f'{{"address": {_hex(fr.address)}, "function": {_str(fr.function)}, "file": {_str(fr.file)}, '
            f'"line": {_num(fr.line)}, "object": {_str(fr.object)}, "offset": {_hex(fr.offset)}}}')


class FindingsWriter:
    """Writes findings to `out` as one JSON list: `write(findings)`, then `close()`."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.count = 0
        self.stacks = IdentityMemo(_REMEMBERED)  # a stack -> its JSON
        self.heads: dict[tuple, str] = {}
        self.tails: dict[tuple, str] = {}
        self.out.write("[")

    def stack(self, frames: tuple[Frame, ...]) -> str:
        known = self.stacks.get(frames)
        if known is not MISSING:
            return known
        parts = []
        for fr in frames:
            # By value: frames read back from results (the result cache) are equal, not shared.
            value = (fr.address, fr.function, fr.file, fr.line, fr.object, fr.offset)
            text = _FRAMES.get(value)
            if text is None:
                if len(_FRAMES) >= _REMEMBERED:
                    _FRAMES.clear()
                text = _FRAMES[value] = frame_json(fr)
            parts.append(text)
        return self.stacks.put(frames, "[" + ", ".join(parts) + "]")

    def finding(self, f: Finding | tuple) -> str:
        """One finding's JSON; f a Finding or the tuple of its fields (findings.fields_of)."""
        if type(f) is tuple:
            (tool, kind, category, message, leak_kind, b, i, k, stack, aux_stacks, pid, thread, count, source,
             signature, suppressed) = f
        else:
            tool, kind, category, message, leak_kind = f.tool, f.kind, f.category, f.message, f.leak_kind
            b, i, k, stack, aux_stacks = f.bytes, f.indirect_bytes, f.blocks, f.stack, f.aux_stacks
            pid, thread, count, source, signature, suppressed = f.pid, f.thread, f.count, f.source, f.signature, f.suppressed
        # What repeats from finding to finding (the tool, kind, category and leak kind; the
        # process, thread, count, log and signature) is put into JSON once per distinct value.
        key = (tool, kind, category, leak_kind)
        head = self.heads.get(key)
        if head is None:
            head = self.heads[key] = (
                f'{{"tool": {_str(tool)}, "kind": {_str(kind)}, "category": {_str(category)}, "message": ',
                f', "leak_kind": {_str(leak_kind)}, "bytes": ')
        key = (pid, thread, count, source, signature, suppressed)
        tail = self.tails.get(key)
        if tail is None:
            if len(self.tails) >= _REMEMBERED:
                self.tails.clear()
            tail = self.tails[key] = (f', "pid": {_num(pid)}, "thread": {_num(thread)}, "count": {_num(count)}, '
                                      f'"source": {_str(source)}, "signature": {_str(signature)}, '
                                      f'"suppressed": {_str(suppressed)}, "stack": ')
        aux = ", ".join([f'{{"label": {_str(a.label)}, "text": {_str(a.text)}, "frames": {self.stack(a.frames)}}}'
                         for a in aux_stacks]) if aux_stacks else ""
        return (f'{head[0]}{encode_basestring_ascii(message)}{head[1]}{"null" if b is None else b}, '
                f'"indirect_bytes": {"null" if i is None else i}, "blocks": {"null" if k is None else k}'
                f'{tail}{self.stack(stack)}, "aux_stacks": [{aux}]}}')

    def write(self, findings: Iterable[Finding], batch: int = _BATCH_CHARS) -> None:
        pending: list[str] = []
        size = 0
        finding, out = self.finding, self.out
        for f in findings:
            text = finding(f)
            pending.append(text)
            size += len(text)
            if size >= batch:
                out.write(("\n" if self.count == 0 else ",\n") + ",\n".join(pending))
                self.count += len(pending)
                pending.clear()
                size = 0
        if pending:
            out.write(("\n" if self.count == 0 else ",\n") + ",\n".join(pending))
            self.count += len(pending)

    def close(self) -> None:
        self.out.write("\n]\n" if self.count else "]\n")


def write_log(writer: FindingsWriter, stream) -> None:
    """Write one log's findings (a parsers.LogStream); afterwards stream.log and stream.found are
    set as iterating it sets them.  A big memcheck file is read by two processes, one half each:
    lxml's parse and the findings are one core's work, and a file of 50,000 errors takes one
    core a second.  A forked child writes the second half's JSON to a spooled file while this
    process writes the first's, then this process copies it out: the output is the one a single
    process writes.  When the child does not finish (it fails, is killed) or either half breaks
    off before its end (an XML error, a file cut short: where lxml stops then depends on how the
    file was read, and a made-up end inside a comment is an error of its own), the child's output
    is dropped and the file is read here as one process reads it, past the first half's
    findings."""
    import itertools
    import os
    import pickle
    import tempfile

    from .. import forked
    from ..parsers.valgrind import join_parts

    halves = stream.halves()
    if halves is None:
        writer.write(stream)
        return
    first, second = halves
    with tempfile.TemporaryFile() as spool:
        ready, told = os.pipe()

        def child() -> None:
            os.close(ready)
            with open(spool.fileno(), "w", encoding="utf-8", closefd=False) as text:
                sub = FindingsWriter(text)  # "[", then the findings: the "[" is left out below
                sub.write(second)
            with open(told, "wb") as out:
                out.write(pickle.dumps((sub.count, second.found, second.log)))

        pid = forked.fork_child(child)
        os.close(told)
        if pid is None:  # no fork here (another thread runs): one process
            os.close(ready)
            writer.write(stream)
            return
        try:
            writer.write(first)
            said = b""
            if not first.log.partial:
                with open(ready, "rb", closefd=False) as fh:
                    said = fh.read()
        except BaseException:
            forked.kill(pid)
            raise
        finally:
            os.close(ready)
        done = None
        if first.log.partial:  # the child's half is of no use: the file is read again below
            forked.kill(pid)
        elif forked.ended_well(forked.reap(pid)) and said:
            try:
                done = pickle.loads(said)  # our own child's, through our own pipe
            except Exception:  # noqa: BLE001 - cut short: read here instead
                done = None
        if done is None or done[2].partial:  # (None too when the first half broke off)
            whole = type(stream)(stream.path, stream.fields)
            writer.write(itertools.islice(whole, first.found, None))
            stream.log, stream.found = whole.log, whole.found
            return
        count, found, log = done
        if count:
            spool.seek(1)  # past the child's "["
            writer.out.write("," if writer.count else "")  # the child's text starts with "\n"
            writer.out.flush()
            _copy(spool, writer.out)
            writer.count += count
    stream.log, stream.found = join_parts(first.log, log), first.found + found


def _copy(spool, out) -> None:
    """The spooled text onto out (a text stream), in pieces."""
    target = getattr(out, "buffer", None)
    while True:
        piece = spool.read(1 << 20)
        if not piece:
            break
        if target is not None:
            target.write(piece)
        else:
            out.write(piece.decode("utf-8"))
    if target is not None:
        target.flush()
