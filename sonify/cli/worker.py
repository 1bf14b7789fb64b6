"""`sonify worker`: a Temporal worker that runs batches' clips, only under the folders it is allowed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import Cancelled
from .batch import host_port
from .exits import EXIT


def worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temporal", type=host_port, required=True, metavar="HOST:PORT",
                        help="the Temporal service's address")
    parser.add_argument("--allow", type=Path, action="append", required=True, metavar="DIR",
                        help="a folder the batches' clips and output folders are under (repeat for more); a clip or "
                             "output anywhere else (symbolic links followed) is refused before any request")


def worker_command(args: argparse.Namespace) -> int:
    import asyncio

    from ..temporal.worker import serve
    from ..temporal.worker_folders import AllowedFolders

    folders = AllowedFolders.of(args.allow)

    def ready(served: list[str]) -> None:
        print(f"worker for {', '.join(served)} on Temporal at {args.temporal}, clips and results under "
              f"{', '.join(map(str, folders.folders))} (Ctrl-C stops it)", file=sys.stderr)

    try:
        asyncio.run(serve(args.temporal, folders, ready))
    except KeyboardInterrupt:
        return EXIT[Cancelled]
    return 0
