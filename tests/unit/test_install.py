"""devstack.install: uv gets the index settings pip would use."""

from __future__ import annotations

from devstack.install import effective_settings, uv_command

PIP_CONFIG_LIST = """\
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/somewhere/else'
global.index-url='https://mirror.example/simple'
install.index-url='https://install-section.example/simple?a=b'
"""


def test_pip_precedence_environment_then_install_section_then_global() -> None:
    settings = effective_settings(PIP_CONFIG_LIST)
    assert settings["find-links"] == "/opt/wheels"  # PIP_FIND_LINKS beats the file
    assert settings["index-url"] == "https://install-section.example/simple?a=b"
    assert settings["cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert effective_settings("") == {}


def test_uv_command_carries_every_index_and_constraint() -> None:
    command = uv_command("uv", "/venv/bin/python", effective_settings(PIP_CONFIG_LIST),
                         ["-r", "up.txt"])  # fmt: skip
    assert command[:6] == ["uv", "pip", "install", "--python", "/venv/bin/python",
                           "--index-strategy"]  # fmt: skip
    pairs = list(zip(command[7:-2:2], command[8:-2:2], strict=True))
    assert pairs == [
        ("--index-url", "https://install-section.example/simple?a=b"),
        ("--extra-index-url", "file:///opt/pypi/simple"),
        ("--extra-index-url", "file:///opt/pypi-more/simple"),
        ("--find-links", "/opt/wheels"),
        ("--constraint", "/etc/xdg/pip/constraints.txt"),
    ]
    assert command[-2:] == ["-r", "up.txt"]
    assert "--no-index" in uv_command("uv", "py", {"no-index": "true"}, [])
    assert "--no-index" not in uv_command("uv", "py", {"no-index": "false"}, [])
