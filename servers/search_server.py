"""Search server entry point: `python servers/search_server.py --config configs/serve.yaml`.

Takes the arguments of `mrse serve` and calls the same package function; stops gracefully on
SIGTERM (in-flight requests finish).
"""

from __future__ import annotations

import sys

from mrse.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
