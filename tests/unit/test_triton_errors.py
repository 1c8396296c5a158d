"""Triton's error texts -> the proxy's taxonomy (cache_proxy.backend.map_triton_error).
The texts are tritonserver 2.51's, as the integration tests meet them."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from cache_proxy.backend import ReleaseDeclined, ReplicaUnavailable, map_triton_error
from cache_proxy.errors import ApiError, BackendFailed, BackendUnavailable, Overloaded


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("[request id: <id_unknown>] Exceeds maximum queue size", Overloaded),
        ("Request timeout expired", Overloaded),  # the queue policy's timeout
        ("release retired by the caller: 0f3a", ReleaseDeclined),
        ("[request id: 7] release retired by the caller: 0f3a", ReleaseDeclined),
        ("the stub timed out", BackendUnavailable),
        ("Request for unknown model: 'x' is not found", ReplicaUnavailable),
        ("inference failed: RuntimeError()", BackendFailed),
    ],
)
def test_triton_errors_map_by_their_text(message: str, expected: type[ApiError]) -> None:
    error = map_triton_error(InferenceServerException(message))
    assert type(error) is expected
    assert message not in error.message  # Triton's text stays in the proxy's log
