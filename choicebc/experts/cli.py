"""``choicebc expert train|eval``."""

from __future__ import annotations

import argparse

from choicebc.cli import add_dataclass_arguments, dataclass_from_args
from choicebc.experts.train import ExpertTrainConfig, train_expert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="expert_command", metavar="{train,eval}", required=True)
    train = sub.add_parser("train", help="train (or resume) an expert with stable-baselines3")
    add_dataclass_arguments(train, ExpertTrainConfig)
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    if args.expert_command == "train":
        cfg = dataclass_from_args(ExpertTrainConfig, args)
        policy = train_expert(cfg, progress=not args.no_progress)
        print(f"best expert: {policy.card.get('train_eval_mean_return')} (run dir {cfg.out_dir})")
    return 0
