"""corral's benchmark suite; run ``python -m benchmarks --help``.

The workloads live in :mod:`corral._bench` so that the installed package can
run them too; this folder is the entry point from a checkout.
"""
