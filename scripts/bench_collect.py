"""Collection benchmark (same as ``choicebc bench collect``); see ``choicebc/bench/collect.py``.

python scripts/bench_collect.py                         # HalfCheetah-v5, N = 256, 1M transitions
python scripts/bench_collect.py --transitions 256000    # a shorter run
"""

import argparse
import sys

from choicebc.bench import collect

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    collect.add_arguments(parser)
    sys.exit(collect.run(parser.parse_args()))
