"""What the integration tests share (no fixtures: those are in conftest.py):
the session Triton's handle, a private Triton + proxy stack, a proxy with the
tests' settings, and tritonclient helpers. Servers start through devstack.launch."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from safetensors.numpy import load_file, save_file

from checkout.repository import copy_model_definition
from devstack.launch import start_proxy, start_triton
from devstack.process import ServerProcess
from modelctl.install import install
from tests.http import request
from tests.wordpiece import distilbert
from tritonserve import TritonPorts

MODEL = "distilbert_sst2"
ProxyFactory = Callable[..., str]


@dataclass(frozen=True)
class Triton:
    ports: TritonPorts
    repository: Path
    server: ServerProcess

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"


def launch_proxy(logs: Path, **settings: str) -> ServerProcess:
    """A real proxy, ready. Identity polls are inferences: kept out of
    Triton's statistics (which tests read to prove what reached Triton)
    unless a test sets MODEL_REFRESH_SECONDS itself."""
    return start_proxy(logs, **{"model_refresh_seconds": "3600", **settings})


@dataclass
class Stack:
    """A private Triton (own repository copy) with a proxy in front of it."""

    triton: ServerProcess
    ports: TritonPorts
    repository: Path
    proxy: ServerProcess

    def stop(self) -> None:
        self.proxy.stop()
        self.triton.stop()


def start_stack(
    checkpoint: Path,
    workdir: Path,
    logs: Path,
    redis_port: int,
    config: str | None = None,
    engines: Path | None = None,
    **proxy_settings: str,
) -> Stack:
    """Serve `checkpoint` (committed config unless `config`; with its converted
    `engines` if given) behind a proxy."""
    repository = copy_model_definition(workdir / "repo", config)
    install(checkpoint, repository, engines=engines)
    triton, ports = start_triton(repository, logs)
    try:
        proxy = launch_proxy(
            logs,
            triton_url=f"127.0.0.1:{ports.http}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            **proxy_settings,
        )
    except BaseException:
        triton.stop()  # never leave a server behind a failed fixture
        raise
    return Stack(triton, ports, repository, proxy)


def text_input(module: object, texts: list[str]) -> object:
    data = np.array([[t.encode()] for t in texts], dtype=np.object_)
    tensor = module.InferInput("TEXT", list(data.shape), "BYTES")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(data)
    return tensor


@contextmanager
def http_client(triton: Triton) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        yield client
    finally:
        client.close()


def http_scores(triton: Triton, texts: list[str]) -> np.ndarray:
    out = httpclient.InferRequestedOutput("PROBABILITIES")
    with http_client(triton) as client:
        result = client.infer(MODEL, [text_input(httpclient, texts)], outputs=[out])
    return result.as_numpy("PROBABILITIES")


def stats(triton: Triton) -> dict[str, int]:
    with http_client(triton) as client:
        model = client.get_inference_statistics(MODEL)["model_stats"][0]
    return {
        "requests": int(model["inference_stats"]["success"]["count"]),
        "executions": int(model["execution_count"]),
        "inferences": int(model["inference_count"]),
        "queue_ns": int(model["inference_stats"]["queue"]["ns"]),
    }


def swapped_labels_checkpoint(checkpoint: Path, dest: Path) -> Path:
    """A real, different checkpoint (new fingerprint) whose scores are the
    old ones reversed, so an answer of the old model is unmistakable."""
    shutil.copytree(checkpoint, dest)
    weights = load_file(str(dest / "model.safetensors"))
    for name in ("classifier.weight", "classifier.bias"):
        weights[name] = weights[name][::-1].copy()
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    info = json.loads((dest / "model_info.json").read_text())
    (dest / "model_info.json").write_text(json.dumps({**info, "name": "standin-tiny-swapped"}))
    return dest


def proxy_metric(url: str, name: str) -> float:
    """One unlabelled sample of the proxy's /metrics, e.g. proxy_admitted_cost_total."""
    metrics = request("GET", f"{url}/metrics").body.decode()
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    assert found is not None, f"{name} not in the proxy's metrics"
    return float(found[1])


def admitted_cost(url: str) -> float:
    return proxy_metric(url, "proxy_admitted_cost_total")


def distilbert_tokens(text: str) -> int:
    """Tokens of `text` under DistilBERT's tokenizer (standin-tiny's), [CLS] and
    [SEP] included: what the proxy charges for it once it has the tokenizer."""
    return len(distilbert().encode(text).ids)


def wait_for_token_costs(url: str, timeout: float = 10) -> None:
    """Until the proxy at `url` counts tokens (it fetches the model's tokenizer
    just after start; readiness does not wait for it)."""
    deadline = time.monotonic() + timeout
    while json.loads(request("GET", f"{url}/health/ready").body).get("costs") != "tokens":
        assert time.monotonic() < deadline, "the proxy never loaded the model's tokenizer"
        time.sleep(0.1)
