"""Research scripts behind docs/distill.md: not part of the installed package, run from the
repository root (``python -m research.anatomy``). They may import anything in crd_edge."""
