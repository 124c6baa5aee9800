"""``python -m benchmarks``: run the suite (see ``--help``)."""

from corral._bench._runner import main

raise SystemExit(main())
