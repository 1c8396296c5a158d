"""Attacks on the proxy, each run beside an honest client, for the tests
(tests/integration/test_attacks.py) and the "under attack" bench step.

The honest client sends one never-seen sentence every 200 ms and records each
answer's status and latency. An attack runs from a few threads until told to
stop and records the statuses it got (0 where the server answered nothing,
as for an upload it cut off itself). Traffic goes only to the given URL.
"""

from __future__ import annotations

import gzip
import http.client
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

HONEST_PERIOD_SECONDS = 0.2
SENTENCES = (
    "a gorgeous , witty , seductive movie",
    "the film is strictly routine",
    "an utterly charming and hilarious film that reminded me of the best of the 80s",
    "it 's a bad sign when you 're rooting for the villain",
    "the performances are uniformly superb",
)
WORDS = [
    "the",
    "plot",
    "meanders",
    "but",
    "the",
    "acting",
    "is",
    "often",
    "wonderful",
    "and",
    "the",
    "score",
    "soars",
]


@dataclass
class Tally:
    """Statuses and latencies (seconds) of one side's requests."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, status: int, latency: float = 0.0) -> None:
        with self.lock:
            self.statuses.append(status)
            self.latencies.append(latency)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    headers: tuple[tuple[str, str], ...] = ()  # sent with every POST (an API key)

    @classmethod
    def of(cls, url: str, headers: dict[str, str] | None = None) -> Target:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, tuple((headers or {}).items()))

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def socket(self, timeout: float = 30) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=timeout)


def post(target: Target, body: bytes, headers: dict[str, str] | None = None) -> int:
    """POST /predict on a fresh connection; the status (0: no answer)."""
    conn = target.connection()
    try:
        conn.request("POST", "/predict", body, {**dict(target.headers), **(headers or {})})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def honest_client(target: Target, stop: threading.Event, tally: Tally) -> None:
    """One never-seen sentence every HONEST_PERIOD_SECONDS until `stop`."""
    for n in itertools.count():
        if stop.is_set():
            return
        started = time.monotonic()
        text = f"{SENTENCES[n % len(SENTENCES)]} {uuid.uuid4().int % 10**6}"
        status = post(target, json.dumps({"text": [text]}).encode())
        tally.add(status, time.monotonic() - started)
        stop.wait(max(0.0, HONEST_PERIOD_SECONDS - (time.monotonic() - started)))


def raw_exchange(target: Target, request: bytes, *, hang_up: bool = False) -> int:
    """Send raw bytes; the status of the answer (0: none, or we hung up)."""
    with target.socket() as sock:
        sock.sendall(request)
        if hang_up:
            return 0
        head = sock.recv(4096).split(b"\r\n", 1)[0]
    parts = head.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def raw_post(body: bytes, headers: str = "", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (
        f"POST /predict HTTP/1.1\r\nHost: attack\r\nContent-Length: {size}\r\n"
        f"Connection: close\r\n{headers}\r\n"
    ).encode() + body


GOOD = b'{"text": ["fine"]}'
MALFORMED: tuple[tuple[str, bytes], ...] = (
    ("deep nesting", raw_post(b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")),
    ("not gzip", raw_post(b"this is not gzip", "Content-Encoding: gzip\r\n")),
    ("truncated gzip", raw_post(gzip.compress(GOOD)[:15], "Content-Encoding: gzip\r\n")),
    ("unsupported encoding", raw_post(GOOD, "Content-Encoding: zstd\r\n")),
    ("huge number", raw_post(b'{"text": ["a"], "n": ' + b"9" * 100_000 + b"}")),
    ("huge float", raw_post(b'{"text": [' + b'"a", ' * 10 + b"1e999999]}")),
    ("duplicate keys", raw_post(b'{"text": ["a"], "text": ["b"]}')),
    ("not utf-8", raw_post(b'{"text": ["\xff\xfe"]}')),
    (
        "bad chunked",
        b"POST /predict HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
    ),
)


def malformed(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Every malformed body in turn, and uploads cut off half way."""
    for name, request in itertools.cycle(MALFORMED):
        if stop.is_set():
            return
        tally.add(raw_exchange(target, request))
        if name == "deep nesting":  # then an upload cut off half way
            raw_exchange(target, raw_post(GOOD * 100, length=100_000), hang_up=True)


def bombs(target: Target, stop: threading.Event, tally: Tally) -> None:
    """gzip bombs: 1 KB-ish bodies that inflate to 64 MiB, and one that
    inflates to a valid body holding one text just under the 1 MiB limit."""
    bomb = gzip.compress(b'{"text": ["' + b"a" * (64 << 20) + b'"]}', 9)
    near = gzip.compress(b'{"text": ["' + b"a " * 500_000 + b'"]}', 9)
    headers = {"Content-Encoding": "gzip"}
    while not stop.is_set():
        tally.add(post(target, bomb, headers))
        tally.add(post(target, near, headers))


def long_texts(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Requests full of never-seen texts far past 512 tokens (~1 MiB each)."""
    while not stop.is_set():
        texts = [
            f"{uuid.uuid4()} " + " ".join(WORDS[i % len(WORDS)] for i in range(3_000))
            for _ in range(50)
        ]
        tally.add(post(target, json.dumps({"text": texts}).encode()))


def cache_busting(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Requests of 256 never-seen short sentences, back to back."""
    while not stop.is_set():
        texts = [f"{SENTENCES[i % len(SENTENCES)]} {uuid.uuid4().hex[:8]}" for i in range(256)]
        tally.add(post(target, json.dumps({"text": texts}).encode()))


def slow_connections(target: Target, stop: threading.Event, tally: Tally) -> None:
    """100 idle connections, 100 that send headers a byte at a time, and 100
    that send a body a byte at a time, held open and reopened when closed."""
    partial = {
        "idle": b"",
        "slow headers": b"POST /predict HTTP/1.1\r\nHost: a\r\n",
        "slow body": raw_post(b"", length=10_000),
    }
    kinds = list(partial) * 100
    socks: list[socket.socket | None] = [None] * len(kinds)
    while not stop.is_set():
        for i, kind in enumerate(kinds):
            try:
                if socks[i] is None:
                    socks[i] = target.socket(timeout=1)
                    socks[i].sendall(partial[kind])  # type: ignore[union-attr]
                elif kind != "idle":
                    socks[i].sendall(b"x" if kind == "slow body" else b"X")  # type: ignore[union-attr]
            except OSError:  # closed by the server: count it, open another
                tally.add(0)
                closed, socks[i] = socks[i], None
                if closed is not None:
                    closed.close()
        stop.wait(1.0)
    for sock in socks:
        if sock is not None:
            sock.close()


def long_text(words: int = 600) -> str:
    """A never-seen text of more than 512 tokens."""
    return f"{uuid.uuid4()} " + " ".join(WORDS[i % len(WORDS)] for i in range(words))


def abandon_flood(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Requests of 130 distinct texts past 512 tokens each: more than a
    request's deadline can compute on a slow CPU, so they fail at once (413)
    or part way; the work they had sent must still be counted and finished."""
    while not stop.is_set():
        tally.add(post(target, json.dumps({"text": [long_text() for _ in range(130)]}).encode()))


def hang_up_flood(target: Target, stop: threading.Event, tally: Tally) -> None:
    """Requests of 64 never-seen sentences whose clients leave after 0.3 s."""
    while not stop.is_set():
        texts = [f"{SENTENCES[i % len(SENTENCES)]} {uuid.uuid4().hex[:8]}" for i in range(64)]
        conn = target.connection(timeout=0.3)
        try:
            conn.request(
                "POST", "/predict", json.dumps({"text": texts}).encode(), dict(target.headers)
            )
            response = conn.getresponse()
            response.read()
            tally.add(response.status)
        except (OSError, http.client.HTTPException):
            tally.add(0)  # we hung up
        finally:
            conn.close()


def memory_flood(target: Target, stop: threading.Event, tally: Tally) -> None:
    """The same body, ~2 KB gzip-compressed, of ~1 MB of emoji texts (4 bytes
    each as UTF-8 and as a Python string) from each of 40 clients at once."""
    texts = ["\U0001f600" * 4000] * 60
    body = gzip.compress(json.dumps({"text": texts}, ensure_ascii=False).encode(), 9)
    headers = {"Content-Encoding": "gzip"}
    while not stop.is_set():
        tally.add(post(target, body, headers))


Attack = Callable[[Target, threading.Event, Tally], None]
ATTACKS: dict[str, tuple[Attack, int]] = {  # name -> (attack, threads)
    "malformed": (malformed, 2),
    "bombs": (bombs, 2),
    "long-texts": (long_texts, 4),
    "cache-busting": (cache_busting, 4),
    "slow-connections": (slow_connections, 1),
    "abandon-flood": (abandon_flood, 4),
    "hang-up-flood": (hang_up_flood, 8),
    "memory-flood": (memory_flood, 40),
}


def run(
    url: str,
    attack: str | None,
    seconds: float,
    *,
    threads: int | None = None,
    honest_headers: dict[str, str] | None = None,
    attack_headers: dict[str, str] | None = None,
) -> tuple[Tally, Tally]:
    """The honest client beside `attack` (None: alone) from `threads` threads
    (default: the attack's own count) for `seconds`: (honest tally, attacker tally)."""
    honest, hostile, stop = Tally(), Tally(), threading.Event()
    target = Target.of(url, attack_headers)
    count = 0 if attack is None else threads or ATTACKS[attack][1]
    attackers = [] if attack is None else [ATTACKS[attack][0]] * count
    with ThreadPoolExecutor(1 + len(attackers)) as pool:
        futures = [pool.submit(fn, target, stop, hostile) for fn in attackers]
        time.sleep(0.5 if attackers else 0)  # the attack is under way first
        futures.append(pool.submit(honest_client, Target.of(url, honest_headers), stop, honest))
        time.sleep(seconds)
        stop.set()
        for future in futures:
            future.result()
    return honest, hostile
