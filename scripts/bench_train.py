"""Head training-step benchmark (same as ``choicebc bench train``); see ``choicebc/bench/train.py``.

python scripts/bench_train.py                  # mse, mdn, choicenet, l1, robust: bare + train_bc
python scripts/bench_train.py --no-train-bc    # only the bare head steps
python scripts/bench_train.py --heads mse choicenet --rounds 10
"""

import argparse
import sys

from choicebc.bench import train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train.add_arguments(parser)
    sys.exit(train.run(parser.parse_args()))
