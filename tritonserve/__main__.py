"""The Triton image's entry point.

    python -m tritonserve backends /opt/triton-backends       (image build step)
    python -m tritonserve serve /models /opt/triton-backends  (ENTRYPOINT)

`serve` removes the shared memory an earlier container of its pod left, then
replaces itself with tritonserver listening on all interfaces
(8000 http, 8001 grpc, 8002 metrics).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tritonserve import (
    TritonPorts,
    host_scope,
    prepare_backends,
    server_command,
    server_env,
    sweep_shm_regions,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tritonserve")
    commands = parser.add_subparsers(dest="command", required=True)
    backends = commands.add_parser("backends", help="copy the Python backend stub for this Python")
    backends.add_argument("directory", type=Path)
    serve = commands.add_parser("serve", help="exec tritonserver on all interfaces")
    serve.add_argument("repository", type=Path)
    serve.add_argument("backends", type=Path)
    args = parser.parse_args(argv)
    if args.command == "backends":
        prepare_backends(args.directory)
        return
    # what this pod's earlier containers left (an OOM kill takes the stubs too)
    sweep_shm_regions(scope=host_scope())
    command = server_command(args.repository, args.backends, TritonPorts(), host="0.0.0.0")
    os.execve(command[0], command, server_env())


if __name__ == "__main__":
    main()
