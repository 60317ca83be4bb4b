"""PaddleSeg-style entry point: `python train.py ...` is `humanseg train ...`."""

import sys

from humanseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
