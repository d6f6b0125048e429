"""``python -m k8s_logging_events``: see :mod:`k8s_logging_events._cli` for the commands."""

from k8s_logging_events._cli import main

raise SystemExit(main())
