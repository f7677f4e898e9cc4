"""``python -m threadline_cli``: the same as the ``threadline`` console script."""

from threadline_cli.main import main

raise SystemExit(main())
