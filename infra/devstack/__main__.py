"""``python -m devstack`` (what ``make dev`` runs)."""

from devstack.console import main

raise SystemExit(main())
