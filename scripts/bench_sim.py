"""Batched-simulation benchmark (same as ``choicebc bench sim``); see ``choicebc/bench/sim.py``.

python scripts/bench_sim.py                       # every task, N = 256
python scripts/bench_sim.py --env-ids HalfCheetah-v5 --naive
"""

import argparse
import sys

from choicebc.bench import sim

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sim.add_arguments(parser)
    sys.exit(sim.run(parser.parse_args()))
