"""``python -m detwatch.demo``: the README's demo command."""

from detwatch.demo import main

raise SystemExit(main())
