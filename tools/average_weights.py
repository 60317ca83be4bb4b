"""Average the weights of several training runs of one model into one model file (a model soup).

Runs fine-tuned from the same weights with different seeds land in one basin of the loss, and
their uniform average is often more accurate than each of them (Wortsman et al., "Model soups",
ICML 2022). Every input is checked against the config's model before averaging:

    .venv/bin/python tools/average_weights.py --config CONFIG.yml --out soup.pt A.pt B.pt [...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from humanseg.engine.checkpoint import average_state_dicts, save_model_file
from humanseg.engine.runtime import load_inference_model
from humanseg.errors import HumanSegError


def main() -> int:
    """Load, check, average and write; a one-line error for a bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="config whose model the files hold")
    parser.add_argument("--out", required=True, type=Path, help="the averaged model file")
    parser.add_argument("models", nargs="+", type=Path, help="model.pt files to average")
    args = parser.parse_args()
    try:
        states = [
            load_inference_model(args.config, path, torch.device("cpu"))[1].state_dict()
            for path in args.models
        ]
        save_model_file(args.out, average_state_dicts(states))
    except HumanSegError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: average of {len(states)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
