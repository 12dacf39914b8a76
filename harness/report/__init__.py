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

__all__ = ["CSP", "render_report", "write_report"]


def __getattr__(name: str):
    # The report's face, from html.py, imported when asked for: the other formats (parse's JSON,
    # the CLI's text) need neither jinja2 nor the HTML templates.
    if name in __all__:
        from . import html

        return getattr(html, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
