"""`python -m loupe ...`: the `loupe` command."""

from loupe.cli import main

raise SystemExit(main())
