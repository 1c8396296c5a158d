"""Install pinned requirements into this virtualenv with uv, configured as pip is.

    python -m devstack.install -r requirements/up.txt -c requirements/constraints.txt

pip unpacks wheels one at a time: the service's packages took 67 s into a fresh
virtualenv on 2 cores, uv 12 s (the same pins and files). uv does not read
pip's configuration, so the index, extra indexes, find-links, constraint files
and CA bundle that pip would use here (`pip config list`, which includes the
PIP_* variables) are handed over, and uv weighs all indexes as pip does
(`--index-strategy unsafe-best-match`). Without uv (requirements/bootstrap.txt
could not be installed) this falls back to pip. Neither byte-compiles: the
Makefile does that on every core afterwards. Standard library only: it runs
before anything else is installed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

# pip option -> uv option; repeated for each whitespace-separated value
LIST_OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
SCOPES = (":env:", "install", "global")  # pip's precedence, strongest first


def effective_settings(pip_config_list: str) -> dict[str, str]:
    """`pip config list` output -> {option: value} as pip install would see it."""
    found: dict[tuple[str, str], str] = {}
    for line in pip_config_list.splitlines():
        name, sep, value = line.partition("=")
        scope, dot, option = name.rpartition(".")
        if sep and dot:
            found[(scope, option)] = ast.literal_eval(value)
    settings: dict[str, str] = {}
    for scope in reversed(SCOPES):
        settings.update({option: v for (s, option), v in found.items() if s == scope})
    return settings


def uv_command(uv: str, python: str, settings: dict[str, str], args: list[str]) -> list[str]:
    """`uv pip install` with pip's index settings, then the caller's arguments."""
    command = [uv, "pip", "install", "--python", python, "--index-strategy", "unsafe-best-match"]
    for option, flag in LIST_OPTIONS.items():
        for value in settings.get(option, "").split():
            command += [flag, value]
    if settings.get("no-index", "").lower() in ("1", "true", "yes", "on"):
        command.append("--no-index")
    return command + args


def main(args: list[str]) -> int:
    pip = [sys.executable, "-m", "pip"]
    try:
        from uv import find_uv_bin
    except ImportError:
        print("uv is not installed: installing with pip (slower)", flush=True)
        return subprocess.call([*pip, "install", "--no-compile", *args])
    listed = subprocess.run([*pip, "config", "list"], capture_output=True, text=True)
    if listed.returncode:
        print(f"pip config list failed, uv uses its defaults: {listed.stderr.strip()}", flush=True)
    settings = effective_settings(listed.stdout if not listed.returncode else "")
    env = dict(os.environ)
    if "cert" in settings:
        env.setdefault("SSL_CERT_FILE", settings["cert"])
    return subprocess.call(uv_command(find_uv_bin(), sys.executable, settings, args), env=env)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
