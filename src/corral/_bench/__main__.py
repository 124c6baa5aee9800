"""``python -m corral._bench``: run the benchmark suite."""

from ._runner import main

raise SystemExit(main())
