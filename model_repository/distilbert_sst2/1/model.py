"""Triton Python-backend entry point for distilbert_sst2.

execute() stays thin: decode each request, score all texts together through
the Classifier (length-sorted, packed micro-batches), split scores back per request.
A malformed request gets its own INVALID_ARG error; the others still succeed.
"""

import contextlib
import ctypes
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the server never downloads
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# libgomp's idle torch threads spin for a long time by default. On a small
# CPU shared with tritonserver's own threads that spinning starves them, and
# tritonserver's dynamic batcher then often misses its wake-up and sleeps
# its default wait. A short spin keeps the fast hand-off and makes the stalls
# rare (measured: the model's README, "GOMP_SPINCOUNT"). Must be set before
# torch loads libgomp.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engines
import numpy as np
import selection
import triton_python_backend_utils as pb_utils
from outputs import requested_outputs, wants_scores
from spans import StepSpans

import packed_forward
from batching import split_rows
from classifier import Classifier
from identity import (
    DECLINED,
    checkpoint_digest,
    code_digest,
    describe,
    read_provenance,
    retired_by_caller,
)
from runtime import cpu_quota, engine_setting, intra_op_threads, parameters
from tokens import decode_texts

CHOICE_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distilbert_sst2-engines"
)
WARMUP_TEXTS = ["warm up", "a slightly longer sentence to warm up the packed path"] * 8
# OpenVINO prepares each input shape on its first call (a one-off cost of
# tens of ms): load runs them first, shortest first, for at most this long (a
# slow CPU warms the short shapes, where the extra time weighs most).
SHAPE_WARMUP_SECONDS = 5.0


def return_freed_memory():
    """Hand the heap freed while loading (int8: the fp32 Linear weights that
    quantization replaced) back to the OS, which glibc otherwise keeps (the
    stub's resident memory: `make bench`'s under-attack table)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class TritonPythonModel:
    def initialize(self, args):
        started = time.monotonic()
        self.logger = pb_utils.Logger
        config = json.loads(args["model_config"])
        params = parameters(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        checkpoint = version_dir / params["checkpoint"]
        if not (checkpoint / "config.json").is_file():
            raise pb_utils.TritonModelException(
                f"no checkpoint at {checkpoint}: run `make model` (python -m modelctl get)"
            )
        engines_dir = version_dir / params["engines"]
        instances = sum(g.get("count", 1) for g in config.get("instance_group", [])) or 1
        threads = intra_op_threads(params["intra_op_threads"], instances, cpu_quota())
        settings = {
            "max_length": int(params["max_sequence_length"]),
            "token_budget": int(params["token_budget"]),
        }

        def classifier(name):
            return Classifier(checkpoint, engines.load(name, checkpoint, engines_dir, threads),
                              **settings)  # fmt: skip

        content = checkpoint_digest(checkpoint)  # hashed once: the choice's cache key and identity
        engine, precisions = engine_setting(params["engine"], os.environ)
        if precisions:
            self.classifier = self._measured_choice(
                checkpoint, content, engines_dir, threads, classifier, precisions
            )
        else:
            self.classifier = classifier(engine)
        self._check_labels(Path(args["model_repository"]) / "labels.txt")
        engine = self.classifier.engine
        serving = {
            "precision": engine.precision,
            "engine": engine.name,
            "engine_files": engine.digest,
            "max_sequence_length": self.classifier.max_length,
            "forward": packed_forward.NAME,
        }
        self.info = describe(checkpoint, self.classifier.labels, serving, content, code_digest())
        self.info_bytes = self.info.to_json()
        self.tokenizer_bytes = self.classifier.tokenizer.backend_tokenizer.to_str().encode()
        self.spans = StepSpans()  # tokenize and forward in traces (spans.py)
        self.classifier.predict(WARMUP_TEXTS)  # first real request is then fast
        warmed, shapes = self.classifier.warm_up_shapes(SHAPE_WARMUP_SECONDS)
        return_freed_memory()

        self.logger.log_info(
            f"distilbert_sst2 ready in {time.monotonic() - started:.1f}s: "
            f"{self.info_bytes.decode()} threads={threads} shapes_warmed={warmed}/{shapes}"
        )
        if self.info.standin:
            warning = self.info.extra.get("warning", "random weights")
            self.logger.log_warn(f"STAND-IN MODEL {self.info.name}: {warning}")

    def _measured_choice(self, checkpoint, content, engines_dir, threads, classifier, precisions):
        """engine: auto (or auto-fp32). Measure every built engine of those
        `precisions` once per machine and model (selection.py)."""
        names = [n for n in engines.available(engines_dir) if n.rsplit("-", 1)[1] in precisions]
        digests = {n: engines.digest_of(n, engines_dir) for n in names}
        digests["checkpoint"] = content
        cached = CHOICE_CACHE / f"{selection.cache_key(digests, threads)}.json"
        trials = selection.read_cached(cached)
        if trials is None:
            trials = selection.measure(names, lambda name: classifier(name).predict)
            selection.write_cached(cached, trials)
        standin = read_provenance(checkpoint).get("standin", False)
        rule = selection.Rule.of(trials, standin=standin)
        chosen = selection.best(trials, rule)
        self.logger.log_info(
            f"engine auto -> {chosen.engine}; {rule}, max drift {rule.max_drift:.1e}; "
            f"trials ({cached}): {trials}"
        )
        if not rule.qualifies(chosen):
            self.logger.log_warn(
                f"engine auto: no engine qualifies (torch-fp32's own batch drift "
                f"{chosen.batch_drift:.1e} is over {rule.max_drift:.1e}); serving {chosen.engine}"
            )
        return classifier(chosen.engine)

    def _check_labels(self, labels_file):
        listed = labels_file.read_text().split()
        if listed != self.classifier.labels:
            raise pb_utils.TritonModelException(
                f"{labels_file} lists {listed} but the checkpoint's id2label is "
                f"{self.classifier.labels}: re-run `make model`"
            )

    def execute(self, requests):
        wanted = [requested_outputs(r.requested_output_names()) for r in requests]
        texts, counts, errors = [], [], {}
        for n, request in enumerate(requests):
            batch = []
            if retired_by_caller(request.parameters(), self.info.release):
                errors[n] = pb_utils.TritonError(
                    f"{DECLINED}: {self.info.release}", pb_utils.TritonError.UNAVAILABLE
                )
            elif wants_scores(wanted[n]):  # a MODEL_INFO-only request costs no forward pass
                try:
                    tensor = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
                    batch = decode_texts(tensor)
                except ValueError as exc:
                    errors[n] = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
            texts.extend(batch)
            counts.append(len(batch))
        traced = self.spans.parents(requests)
        try:
            with self.spans.step(traced, "tokenize", texts=len(texts), requests=len(requests)):
                ids = self.classifier.token_ids(texts) if texts else []
            tokens = sum(len(row) for row in ids) if traced else 0  # an attribute only
            with self.spans.step(traced, "forward", texts=len(texts), tokens=tokens):
                scores = self.classifier.score_token_ids(ids)
        except Exception as exc:  # one failed forward must not kill the stub
            self.logger.log_error(f"forward failed for {len(texts)} texts: {exc!r}")
            error = pb_utils.TritonError(f"inference failed: {exc}", pb_utils.TritonError.INTERNAL)
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        responses = []
        for n, (request, rows) in enumerate(zip(requests, split_rows(scores, counts), strict=True)):
            if n in errors:
                responses.append(pb_utils.InferenceResponse(error=errors[n]))
            else:
                responses.append(self._response(request, rows, wanted[n]))
        return responses

    def finalize(self):
        self.spans.shutdown()

    def _response(self, request, rows, wanted):
        outputs = []
        if "PROBABILITIES" in wanted:
            outputs.append(pb_utils.Tensor("PROBABILITIES", rows))
        rows_in = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().shape[0]
        if "MODEL_INFO" in wanted:
            info = np.full((rows_in, 1), self.info_bytes, dtype=np.object_)
            outputs.append(pb_utils.Tensor("MODEL_INFO", info))
        if "TOKENIZER" in wanted:
            tokenizer = b"" if wants_scores(wanted) else self.tokenizer_bytes
            outputs.append(
                pb_utils.Tensor("TOKENIZER", np.full((rows_in, 1), tokenizer, dtype=np.object_))
            )
        return pb_utils.InferenceResponse(output_tensors=outputs)
