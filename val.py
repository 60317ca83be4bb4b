"""PaddleSeg-style entry point: `python val.py ...` is `humanseg val ...`."""

import sys

from humanseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["val", *sys.argv[1:]]))
