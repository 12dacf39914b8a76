"""What the catalog knows of a report's bugs (knowledge.py), as the pattern pages show it: the
pattern a bug looks like with its description, real-world references and fix diff, or the
OpenSSL ownership rule that names the call to release it."""

from __future__ import annotations

from pathlib import Path

from ..knowledge import Explainer, Sources, details


def boxes(out: Path, page_pattern: str, bugs) -> dict[tuple[str, str], dict]:
    """{(variant, signature): box} for the bugs of one page.  On a catalog pattern's own page
    the pattern's own bug is not explained by itself."""
    explainers: dict[int, Explainer] = {}
    found: dict[tuple[str, str], dict] = {}
    for bug in bugs:
        job, group = next(((j, g) for j, g in bug.groups if g is bug.main), bug.groups[0])
        explainer = explainers.get(id(job))
        if explainer is None:
            explainer = explainers[id(job)] = Explainer(sources=Sources(out, job.sources))
        known = explainer.explain(group.root)
        if known is None or (known.pattern == page_pattern and job.variant):
            continue
        found[(bug.variant, bug.signature)] = {
            "line": known.line(), "pattern": known.pattern, "others": list(known.others),
            "mistake": known.mistake, "fix": known.fix, "call": known.call, "rule": known.rule,
            "partial": list(known.partial), "info": details(known.pattern) if known.pattern else None}
    return found
