"""Head training-step benchmark (same as ``choicebc bench train``); see ``choicebc/bench/train.py``.

python scripts/bench_train.py                     # mse, mdn, choicenet on 17->256->256, D=6, K=5
python scripts/bench_train.py --heads mse choicenet --rounds 10
"""

import argparse
import sys

from choicebc.bench import train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    train.add_arguments(parser)
    sys.exit(train.run(parser.parse_args()))
