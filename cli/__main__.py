"""`python -m loupe.cli ...`: the `loupe` command without its console script (tests and scripts run it so)."""

from loupe.cli import main

raise SystemExit(main())
