import sys

from hetagent.cli import main

sys.exit(main())
