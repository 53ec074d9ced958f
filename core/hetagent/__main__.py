"""`python -m hetagent` is the `hetagent` command."""

import sys

from hetagent.cli import main

sys.exit(main())
