"""PaddleSeg-style entry point: `python predict.py ...` is `humanseg predict ...`."""

import sys

from humanseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
