"""What reading long documents in windows is worth: accuracy and time,
first 512 tokens against `"long_texts": "windows"`, through a running service.

    make up MODEL=trained-offline            # the SST-2-trained offline model
    python -m perf.long_documents [--url http://127.0.0.1:8080] [--documents 200]

Documents are built from the held-out split's sentences of 6+ words (the
offline model never trained on them): 20 to 60 sentences, the document's
label their majority. Half are shuffled; in the other half ("minority
first") the minority label's sentences (42% of 48 to 60) come first, so the
first 512 tokens read mostly the minority. Each run's documents start with
a fresh marker word, and each run draws other documents (its seed is in the
report), so no cache answers them or their windows. Writes
perf/results/<UTC time>-long-documents/{report.md, results.json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from checkout.paths import RESULTS
from checkpoints.cache_dir import default_cache_dir
from modelctl.resolve import resolve
from modelctl.spec import ModelSpec
from perf import reports
from perf.machine import cpu_summary
from trainer.data import Example, default_train_tsv, holdout_split, read_tsv
from trainer.offline import Recipe

BATCH = 8  # documents per request


@dataclass(frozen=True)
class Document:
    text: str
    label: int  # the majority of its sentences' labels
    minority_first: bool


def sentences(heldout: list[Example]) -> dict[int, list[str]]:
    """Held-out sentences of 6+ words, by label."""
    by_label: dict[int, list[str]] = {0: [], 1: []}
    for example in heldout:
        if len(example.text.split()) >= 6:
            by_label[example.label].append(example.text.strip())
    return by_label


def build(
    pool: dict[int, list[str]], count: int, rng: random.Random, marker: str
) -> list[Document]:
    documents = []
    for n in range(count):
        label, first = rng.randrange(2), n % 2 == 1
        size = rng.randint(48, 60) if first else rng.randint(20, 60)
        minority = int(size * (0.42 if first else 0.3))
        chosen = rng.sample(pool[1 - label], minority) + rng.sample(pool[label], size - minority)
        if not first:
            rng.shuffle(chosen)
        documents.append(Document(f"{marker} " + " ".join(chosen), label, first))
    return documents


def classify(url: str, texts: list[str], mode: str) -> tuple[list[int], dict[str, str]]:
    body = json.dumps({"text": texts, "long_texts": mode}).encode()
    req = urllib.request.Request(f"{url}/predict", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=300) as reply:
        predictions = json.loads(reply.read())["predictions"]
        headers = dict(reply.headers)
    labels = [max(range(len(p)), key=lambda k: p[k]["score"]) for p in predictions]
    return labels, headers


def measure(url: str, documents: list[Document], mode: str) -> dict[str, Any]:
    labels: list[int] = []
    truncated = 0
    started = time.monotonic()
    for i in range(0, len(documents), BATCH):
        batch = [d.text for d in documents[i : i + BATCH]]
        found, headers = classify(url, batch, mode)
        labels += found
        named = headers.get("X-Truncated")
        truncated += len(named.split(",")) if named else 0
    seconds = time.monotonic() - started

    def accuracy(which: list[int]) -> float:
        return sum(labels[i] == documents[i].label for i in which) / len(which)

    everything = list(range(len(documents)))
    return {
        "mode": mode,
        "seconds": seconds,
        "ms_per_document": seconds / len(documents) * 1000,
        "truncated": truncated,
        "accuracy": accuracy(everything),
        "accuracy_minority_first": accuracy([i for i in everything if documents[i].minority_first]),
        "accuracy_shuffled": accuracy([i for i in everything if not documents[i].minority_first]),
    }


def model_info(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/model", timeout=10) as reply:
        info: dict[str, Any] = json.loads(reply.read())["model"]
    return info


def report(results: dict[str, Any]) -> str:
    rows = [
        f"| {r['mode']} | {r['accuracy']:.3f} | {r['accuracy_minority_first']:.3f} | "
        f"{r['accuracy_shuffled']:.3f} | {r['ms_per_document']:.0f} | {r['truncated']} |"
        for r in results["runs"]
    ]
    first, windows = results["runs"]
    return "\n".join(
        [
            "# Long documents: the first 512 tokens against windows",
            "",
            f"Command: `python -m perf.long_documents --documents {results['documents']} "
            f"--seed {results['seed']}` against "
            f"`make up`, {results['started']} UTC. CPU: **{results['cpu']}**, 2 cores shared by "
            "the service and this client. Model: "
            f"`{results['model'].get('name')}` (engine {results['model'].get('engine')}).",
            "",
            f"{results['documents']} documents of held-out SST-2 sentences (6+ words), "
            f"{results['tokens_median']} tokens at the median ({results['tokens_min']} to "
            f"{results['tokens_max']}), the label their majority; in half, the minority's "
            "sentences come first (the first 512 tokens read mostly the minority). Requests of "
            f"{BATCH} documents, one after another, nothing cached.",
            "",
            "| long_texts | accuracy | minority first | shuffled | ms / document | truncated |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Windows cost {windows['seconds'] / first['seconds']:.2f}x the time of the first 512 "
            "tokens.",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument(
        "--seed", type=int, default=None, help="documents' seed (default: new ones each run)"
    )
    args = parser.parse_args()
    recipe = Recipe()
    _, heldout = holdout_split(read_tsv(default_train_tsv()), recipe.holdout_fraction, recipe.seed)
    started = datetime.datetime.now(datetime.UTC)
    seed = int(started.timestamp()) if args.seed is None else args.seed
    marker = f"review{started:%H%M%S}:"
    documents = build(sentences(heldout), args.documents, random.Random(seed), marker)
    checkpoint = resolve(ModelSpec.parse("trained-offline"), default_cache_dir())
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokenizer.no_truncation()
    lengths = sorted(len(tokenizer.encode(d.text).ids) for d in documents)
    results: dict[str, Any] = {
        "documents": len(documents),
        "seed": seed,
        "started": f"{started:%Y-%m-%d %H:%M}",
        "cpu": cpu_summary(),
        "model": model_info(args.url),
        "tokens_median": lengths[len(lengths) // 2],
        "tokens_min": lengths[0],
        "tokens_max": lengths[-1],
        "runs": [measure(args.url, documents, mode) for mode in ("truncate", "windows")],
    }
    out = RESULTS / f"{started:%Y%m%dT%H%M%SZ}-long-documents"
    reports.write(out, results, report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
