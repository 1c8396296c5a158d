"""`python -m modelctl get MODEL --repository DIR`: fetch or build, then install."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from checkout.paths import MODEL_NAME, MODEL_REPOSITORY
from checkpoints.cache_dir import default_cache_dir
from checkpoints.info import read_info
from modelctl.convert import calibration, ensure_engines
from modelctl.install import install
from modelctl.resolve import resolve
from modelctl.spec import NAMED, ModelSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="get a checkpoint and install it into a repository")
    get.add_argument("model", nargs="?", default="auto", help=f"{' | '.join(NAMED)} | PATH")
    get.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    get.add_argument("--cache", type=Path, default=None, help="checkpoint cache directory")
    get.add_argument("--copy", action="store_true", help="copy instead of linking")
    get.add_argument(
        "--no-engines",
        action="store_true",
        help="skip the ONNX Runtime / OpenVINO conversion (torch engines only)",
    )
    args = parser.parse_args(argv)
    # Our own progress at INFO; other libraries' (ONNX Runtime's quantizer logs
    # every tensor at INFO on the root logger) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="modelctl: %(message)s")
    for name in ("modelctl", "trainer", "checkpoints"):
        logging.getLogger(name).setLevel(logging.INFO)
    log = logging.getLogger("modelctl")

    try:
        spec = ModelSpec.parse(args.model)
        cache = args.cache or default_cache_dir()
        checkpoint = resolve(spec, cache)
        code = args.repository / MODEL_NAME / "1"
        engines = (
            None if args.no_engines else ensure_engines(checkpoint, cache, calibration(), code)
        )
        model_dir = install(checkpoint, args.repository, engines=engines, copy=args.copy)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"modelctl: error: {exc}", file=sys.stderr)
        return 1
    info = read_info(checkpoint)
    log.info("installed %s (source=%s) into %s", info.get("name"), info.get("source"), model_dir)
    if info.get("standin"):
        log.warning("WARNING: %s is a stand-in: %s", info.get("name"), info.get("warning"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
