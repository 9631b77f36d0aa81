"""Catalog encoding entry point: `python trainers/encode.py --data D` or, sharded across
processes, `OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 trainers/encode.py --data D`.

Takes the arguments of `mrse encode` and calls the same package function; every process
encodes its share of the items into the one feature cache, and a rerun after a kill encodes
only what is missing.
"""

from __future__ import annotations

import sys

from mrse.cli import main

if __name__ == "__main__":
    sys.exit(main(["encode", *sys.argv[1:]]))
