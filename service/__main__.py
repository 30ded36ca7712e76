"""`python -m service` runs the command-line interface."""

from service.interfaces.cli import main

raise SystemExit(main())
