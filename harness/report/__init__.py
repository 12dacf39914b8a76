"""Every output leakharness writes, one module per format:

- html.py      the HTML report people would rather read than logs (self-contained, offline)
- sarif.py     SARIF 2.1.0 for code scanning
- junit.py     JUnit XML, one testcase per job
- markdown.py  a short Markdown summary for a CI job page
- text.py      what the command line prints (the run matrix, check's bugs, parse's table)
- svg.py       inline SVG charts: leak growth plots and the nightly trends
- history.py   the nightly history's index page

What each job is (pass, fail, stale, blind, known incomplete; clean, errors, incomplete) is
decided once, by judge.outcome; every format shows that decision.
"""

from .html import CSP, render_report, write_report  # noqa: F401 - the report's face

__all__ = ["CSP", "render_report", "write_report"]
