"""Each pattern's header comment says the bug in the leaky variant and the fix in the fixed one.

A fixed variant whose first line still describes the bug misleads whoever reads the generated
source (issue 10); the header must therefore render differently in the two variants.
"""

from harness.catalog import load_catalog
from harness.generate import render


def test_fixed_header_differs_from_leaky_header():
    patterns = load_catalog()
    assert patterns, "the catalog is empty: nothing was checked"
    same = []
    for pattern in patterns:
        leaky_first = render(pattern, "leaky").splitlines()[0]
        fixed_first = render(pattern, "fixed").splitlines()[0]
        if leaky_first.replace("(leaky)", "(fixed)", 1) == fixed_first:
            same.append(pattern.id)
    assert not same, ("fixed variant's header line still describes the bug (same text as leaky, only the "
                      f"variant name differs): {', '.join(same)}")
