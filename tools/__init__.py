"""Tools of the checkout, not of the platform: `make demo` and the lifecycle diagrams.

They read `examples/`, `statemachine/` and `docs/`, which only the checkout has, so they
live beside those rather than in the installed `treadle` package. Run from the repo root:
`python -m tools.demo`, `python -m tools.lifecycle_docs`.
"""
