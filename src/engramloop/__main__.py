"""`python -m engramloop`: the same entry point as the `engramloop` command."""
import sys

try:
    from engramloop.cli import main
except KeyboardInterrupt:
    # Ctrl-C while the command line is still being imported: nothing was started or
    # written yet; exit as an interrupted command does, without a traceback
    sys.stderr.write("interrupted\n")
    sys.exit(130)

sys.exit(main())
