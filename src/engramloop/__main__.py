"""`python -m engramloop`: the same entry point as the `engramloop` command."""
import sys

from engramloop.cli import main

sys.exit(main())
