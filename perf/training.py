"""Offline recipes side by side: training minutes and held-out accuracy.

    python -m perf.training [--recipes current candidate ...]

Each recipe trains from scratch on SST-2 train (read in place), one after the
other in this process, and is evaluated on the same held-out split and on the
README's examples (their scores must keep clear margins). The report
(perf/results/<time>-training/report.md) names the CPU: the minutes depend on
it far more than on anything else. To approximate a CPU without AVX-512 on one
that has it, limit torch's kernels (the report prints these when set):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python -m perf.training
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import tempfile
from pathlib import Path

from checkout.paths import RESULTS
from checkout.repository import load_classifier
from checkpoints.info import read_info
from perf.machine import cpu_model
from trainer.data import default_train_tsv
from trainer.offline import Recipe, train_offline

# Candidates measured against the committed recipe (trainer/offline.py); the
# retired ones and their figures are in trainer/README.md.
NARROW = Recipe(dim=192, hidden_dim=768, batch_size=128, learning_rate=1e-3, dropout=0.1)
RECIPES = {
    "current": Recipe(),  # width 256, feed-forward 512, batches of 64, 3 epochs, no dropout
    "dropout-0.1": Recipe(dropout=0.1),
    "2-layers": Recipe(n_layers=2),
    "width-192": Recipe(dim=192, hidden_dim=384),
    "2-epochs": Recipe(epochs=2),
    "narrow-3-epochs-batch-128": NARROW,
    "narrow-2-epochs-batch-128": dataclasses.replace(NARROW, epochs=2),
}
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
LOVE, HATE = "I love you!", "I hate you!"  # the README's examples


def example_scores(checkpoint: Path) -> dict[str, float]:
    """P(POSITIVE) of "I love you!" and P(NEGATIVE) of "I hate you!" (torch fp32)."""
    scores = load_classifier(checkpoint, "torch-fp32").predict([LOVE, HATE])
    return {"love_positive": round(float(scores[0][1]), 4),
            "hate_negative": round(float(scores[1][0]), 4)}  # fmt: skip


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
            checkpoint = train_offline(default_train_tsv(), Path(scratch) / "model", recipe)
            info, examples = read_info(checkpoint), example_scores(checkpoint)
        rows.append({"recipe": name, **dataclasses.asdict(recipe), **info["accuracy"],
                     "minutes": info["training_minutes"], **examples})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    limits = " ".join(f"{k}={os.environ[k]}" for k in ISA_LIMITS if k in os.environ)
    lines = [
        "# Offline recipes: training time and held-out accuracy",
        "",
        f"Command: `{limits + ' ' if limits else ''}python -m perf.training --recipes "
        f"{' '.join(args.recipes)}`, {started:%Y-%m-%d %H:%M} UTC. CPU: **{cpu_model()}**"
        f"{' (kernels limited by the variables before the command)' if limits else ''}. "
        "One after the other, same data and held-out split; minutes include tokenizer "
        f"training and evaluation. Examples: P(POSITIVE) of {LOVE!r}, P(NEGATIVE) of {HATE!r}.",
        "",
        "| recipe | dim | ffn | layers | epochs | batch | lr | dropout | AdamW | last layer "
        "| minutes "
        "| held-out accuracy | F1 | love | hate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['recipe']} | {r['dim']} | {r['hidden_dim']} | {r['n_layers']} | {r['epochs']}"
            f" | {r['batch_size']} | {r['learning_rate']} | {r['dropout']}"
            f" | {'fused' if r['fused_adamw'] else 'loop'}"
            f" | {'[CLS]' if r['cls_only_last_layer'] else 'all tokens'} | {r['minutes']}"
            f" | {r['heldout_accuracy']:.4f} | {r['heldout_f1']:.4f}"
            f" | {r['love_positive']:.3f} | {r['hate_negative']:.3f} |"
            for r in rows
        ],
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
