"""`python -m trainer train|eval`: train the offline model; measure accuracy."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from checkpoints.cache_dir import default_cache_dir
from trainer.data import default_train_tsv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or reuse) the offline SST-2 model")
    train.add_argument("--data", type=Path, default=None, help="train TSV (default: SST-2)")
    train.add_argument("--cache", type=Path, default=None)
    train.add_argument("--force", action="store_true", help="retrain even if cached")
    train.add_argument(
        "--from-hub",
        action="store_true",
        help="fine-tune distilbert-base-uncased from the hub (hours on CPU) instead",
    )
    evaluate = sub.add_parser("eval", help="accuracy/F1 in-process and through /predict")
    evaluate.add_argument(
        "--data",
        type=Path,
        default=None,
        help="labelled TSV (default: the offline model's held-out split)",
    )
    evaluate.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint directory (default: model_repository's)",
    )
    evaluate.add_argument("--url", default=None, help="also score through this proxy URL")
    evaluate.add_argument(
        "--engines", default="torch-fp32", help="comma-separated engines to run in-process"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="trainer: %(message)s")

    if args.command == "train":
        from checkpoints.hub import HubUnavailable
        from trainer.cache import ensure_offline_model
        from trainer.finetune import finetune_from_hub

        data, cache = args.data or default_train_tsv(), args.cache or default_cache_dir()
        try:
            if args.from_hub:
                path = finetune_from_hub(data, cache / "finetuned-sst2", cache)
            else:
                path = ensure_offline_model(data, cache, force=args.force)
        except (HubUnavailable, FileNotFoundError) as exc:
            print(f"trainer: error: {exc}", file=sys.stderr)
            return 1
        print(path)
        return 0
    from trainer.evaluate import run_eval

    return run_eval(args.data, args.model, args.url, args.engines.split(","))


if __name__ == "__main__":
    sys.exit(main())
