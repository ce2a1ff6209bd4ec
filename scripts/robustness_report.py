"""The robustness report (same as ``choicebc report``); see ``choicebc/report/``.

python scripts/robustness_report.py --quick                 # HalfCheetah, flipped, step, 0/30/50 %
python scripts/robustness_report.py                         # the full grid (resumes)
python scripts/robustness_report.py --ray-address auto      # the full grid on a Ray cluster
python scripts/robustness_report.py --render-only           # re-render results/report.md
"""

import argparse
import sys

from choicebc import report

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    report.add_arguments(parser)
    sys.exit(report.run(parser.parse_args()))
