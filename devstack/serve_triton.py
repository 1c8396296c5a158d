"""Container entry point: exec tritonserver with the right environment.

`python -m devstack.serve_triton /models /opt/triton-backends` replaces itself
with tritonserver listening on all interfaces (8000 http, 8001 grpc, 8002 metrics).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devstack.triton import TritonPorts, server_command, server_env


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit("usage: python -m devstack.serve_triton MODEL_REPOSITORY BACKEND_DIRECTORY")
    repository, backends = (Path(a) for a in argv)
    command = server_command(repository, backends, TritonPorts(), host="0.0.0.0")
    os.execve(command[0], command, server_env())


if __name__ == "__main__":
    main(sys.argv[1:])
