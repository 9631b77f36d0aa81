"""Catalog worker entry point: `python servers/catalog_worker.py --config configs/catalog.yaml`.

Takes the arguments of `mrse catalog worker` and calls the same package function. Stops cleanly
on SIGTERM/SIGINT (a batch's offsets are committed only after its index writes).
"""

from __future__ import annotations

import sys

from mrse.cli import main

if __name__ == "__main__":
    sys.exit(main(["catalog", "worker", *sys.argv[1:]]))
