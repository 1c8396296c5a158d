"""Offline recipes side by side: training minutes and held-out accuracy.

    python -m perf.training [--recipes current candidate ...]

Each recipe trains from scratch on SST-2 train (read in place), one after the
other in this process, and is evaluated on the same held-out split. The
report (perf/results/<time>-training/report.md) names the CPU: the minutes
depend on it far more than on anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import tempfile
from pathlib import Path

from checkpoints.info import read_info
from devstack.paths import RESULTS
from perf.machine import cpu_model
from trainer.data import default_train_tsv
from trainer.offline import Recipe, train_offline

# Candidates measured against the committed recipe (trainer/offline.py).
NARROW = Recipe(dim=192, hidden_dim=768, batch_size=128, learning_rate=1e-3)
RECIPES = {
    "current": Recipe(),  # width 256, batches of 64, 3 epochs
    "2-epochs": dataclasses.replace(Recipe(), epochs=2),
    "narrow-3-epochs-batch-128": NARROW,
    "narrow-2-epochs-batch-128": dataclasses.replace(NARROW, epochs=2),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # training progress
    started = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}-training"
    out.mkdir(parents=True)
    rows = []
    for name in args.recipes:
        recipe = RECIPES[name]
        with tempfile.TemporaryDirectory(prefix=f"recipe-{name}-") as scratch:
            info = read_info(train_offline(default_train_tsv(), Path(scratch) / "model", recipe))
        rows.append({"recipe": name, **dataclasses.asdict(recipe), **info["accuracy"],
                     "minutes": info["training_minutes"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "# Offline recipes: training time and held-out accuracy",
        "",
        f"Command: `python -m perf.training --recipes {' '.join(args.recipes)}`, "
        f"{started:%Y-%m-%d %H:%M} UTC. CPU: **{cpu_model()}**. One after the other, "
        "same data and held-out split; minutes include tokenizer training and evaluation.",
        "",
        "| recipe | dim | layers | epochs | batch | lr | minutes | held-out accuracy | F1 |",
        "|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['recipe']} | {r['dim']} | {r['n_layers']} | {r['epochs']} | {r['batch_size']}"
            f" | {r['learning_rate']} | {r['minutes']} | {r['heldout_accuracy']:.4f}"
            f" | {r['heldout_f1']:.4f} |"
            for r in rows
        ],
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
