"""`python -m entrypoints.cli`: the same as the `payments` command."""

import sys

from entrypoints.cli.main import main

sys.exit(main())
