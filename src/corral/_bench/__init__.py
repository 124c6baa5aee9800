"""The benchmark suite: corral beside the raw anyio floor, measured in the same run.

Run it with ``python -m benchmarks`` from a checkout (or ``python -m corral._bench``).
It sits outside the core and uses only corral's public API.
"""
