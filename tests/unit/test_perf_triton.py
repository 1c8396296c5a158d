"""make bench-triton's workloads (real SST-2 train, read in place)."""

from __future__ import annotations

from perf.triton.bench import workloads


def test_perf_analyzer_sends_the_kind_of_text_the_kernel_scores() -> None:
    # the report divides Triton's rate by the kernel's batch-32 rate
    served, kernel = workloads(short=True)
    assert len(served) == 1000 and len(kernel) == 192
    assert min(len(t.split()) for t in served) >= 8
    assert min(len(t.split()) for t in kernel) >= 8
    assert not set(served) & set(kernel)  # fresh texts for each, nothing warmed by the other
