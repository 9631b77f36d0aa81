"""Training entry point: `python trainers/train.py ...` or, sharded,
`OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 trainers/train.py ...`.

Takes the arguments of `mrse train` and calls the same package function.
"""

from __future__ import annotations

import sys

from mrse.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
