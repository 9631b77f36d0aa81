"""Stream worker entry point: `python servers/stream_worker.py --data DIR --bootstrap HOST:PORT`.

Takes the arguments of `mrse stream worker` and calls the same package function. Stops cleanly
on SIGTERM/SIGINT (offsets of the batch in flight are committed only after its push).
"""

from __future__ import annotations

import sys

from mrse.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", "worker", *sys.argv[1:]]))
