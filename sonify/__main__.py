import os
import sys

from .cli import main

code = main()
if "temporalio" in sys.modules:
    # Temporal's runtime threads can abort the interpreter's teardown (SIGABRT instead of the exit code:
    # temporalio/sdk-python#300, open), so a command that used it ends here, its output flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
