"""Prometheus metrics, one registry per app (no module-level globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, memory, fds
        self.requests = Counter(
            "proxy_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "proxy_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "proxy_cache_lookups",
            "Per-text cache lookups by result (hit, miss, error)",
            ["result"],
            registry=r,
        )
        self.texts_per_request = Histogram(
            "proxy_texts_per_request",
            "Texts in one /predict request",
            buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.triton_latency = Histogram(
            "proxy_triton_seconds",
            "Latency of one Triton inference call",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.triton_errors = Counter(
            "proxy_triton_errors", "Failed Triton calls by error type", ["error_type"], registry=r
        )
        self.model_answers_refused = Counter(
            "proxy_model_answers_refused",
            "Triton answers from a retired model release, asked again (a rolling update)",
            registry=r,
        )
        self.model_calls_declined = Counter(
            "proxy_model_calls_declined",
            "Triton calls a replica of a retired release declined before computing, asked again",
            registry=r,
        )
        self.truncated_texts = Counter(
            "proxy_truncated_texts",
            "Texts over 512 tokens the model read only the first 512 of (X-Truncated)",
            registry=r,
        )
        self.windowed_texts = Counter(
            "proxy_windowed_texts",
            'Texts over 512 tokens read in windows ("long_texts": "windows")',
            registry=r,
        )
        self.singleflight_merged = Counter(
            "proxy_singleflight_merged_texts",
            "Texts that waited for a concurrent request's computation instead of Triton",
            registry=r,
        )
        self.inflight_cost = Gauge(
            "proxy_inflight_cost",
            "Cost units sent to Triton and not answered yet (within proxy_inflight_budget_cost)",
            registry=r,
        )
        self.inflight_chunks = Gauge(
            "proxy_inflight_chunks",
            "Chunks (Triton requests) sent to Triton and not answered yet",
            registry=r,
        )
        self.inflight_budget = Gauge(
            "proxy_inflight_budget_cost",
            "Cost units allowed in flight now: the learned rate x ADMISSION_TARGET_SECONDS,"
            " within MIN_INFLIGHT_COST..MAX_INFLIGHT_COST",
            registry=r,
        )
        self.model_capacity = Gauge(
            "proxy_model_capacity_cost_per_second",
            "Cost units per second the model answers while kept busy (more than one chunk"
            " in flight), learned from its answers (0: not yet)",
            registry=r,
        )
        self.model_rate = Gauge(
            "proxy_model_rate_cost_per_second",
            "Cost units per busy second the model answers, learned from its answers (0: not yet)",
            registry=r,
        )
        self.admitted_cost = Counter(
            "proxy_admitted_cost",
            "Cost units admitted to Triton: tokens, once the model's tokenizer is known",
            registry=r,
        )
        self.queued_cost = Gauge(
            "proxy_queued_cost", "Cost units waiting for admission to Triton", registry=r
        )
        self.admission_wait = Histogram(
            "proxy_admission_wait_seconds",
            "Time a chunk waited for admission to Triton",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "proxy_rejections",
            "Requests or chunks refused or shed, by reason",
            ["reason"],
            registry=r,
        )
        self.shed_cost = Counter(
            "proxy_shed_cost",
            "Cost units of the work refused or shed, by reason",
            ["reason"],
            registry=r,
        )
        self.body_bytes_held = Gauge(
            "proxy_body_bytes_held",
            "Request body bytes held now (MAX_BODY_BYTES_IN_FLIGHT bounds them)",
            registry=r,
        )
        self.ratelimit_skipped = Counter(
            "proxy_ratelimit_skipped",
            "Requests let through unchecked because Redis was unavailable (fail open)",
            registry=r,
        )
        self.memory_trims = Counter(
            "proxy_memory_trims",
            "Times freed memory was given back to the system (MEMORY_TRIM_ABOVE_MIB)",
            registry=r,
        )
        self.memory_trimmed_bytes = Counter(
            "proxy_memory_trimmed_bytes",
            "Resident bytes those trims gave back",
            registry=r,
        )
        for reason in self.SHED_REASONS:  # 0, not absent, until the first one
            self.rejections.labels(reason)
            self.shed_cost.labels(reason)
        self.redis_up = Gauge(
            "proxy_redis_up", "1 if the cache is in use, 0 if bypassed (degraded)", registry=r
        )

    SHED_REASONS = (
        "admission_timeout",
        "queue_full",
        "rate_limit",
        "connection_cap",
        "idle_connection_closed",
        "unauthorized",
        "body_budget",
        "model_queue",  # Triton's queue policy refused the chunk (opt-in)
    )

    def shed(self, reason: str, cost: int = 0) -> None:
        """Count one refused or shed request (or chunk) and its cost."""
        self.rejections.labels(reason).inc()
        self.shed_cost.labels(reason).inc(cost)
