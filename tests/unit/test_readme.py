"""The README documents every setting, error type and metric the code has."""

from __future__ import annotations

import re

from cache_proxy.errors import ApiError
from cache_proxy.metrics import Metrics
from cache_proxy.settings import markdown_table
from modelctl.spec import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_settings_table_is_generated_from_the_settings_class() -> None:
    found = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", README, re.S)
    assert found, "README lacks the settings markers"
    assert found.group(1).strip() == markdown_table().strip(), (
        "README settings table is stale: paste `python -m cache_proxy.settings` between the markers"
    )


def error_types(cls: type[ApiError] = ApiError) -> set[str]:
    return {cls.error_type}.union(*(error_types(sub) for sub in cls.__subclasses__()))


def test_every_error_type_is_in_the_errors_table() -> None:
    section = README[README.index("### Errors") : README.index("### Proxy settings")]
    missing = {t for t in error_types() if f"`{t}`" not in section}
    assert not missing


def test_every_metric_is_listed() -> None:
    names = {
        metric.name + ("_total" if metric.type == "counter" else "")
        for metric in Metrics().registry.collect()
        if metric.name.startswith("proxy_")
    }
    assert names
    assert not {name for name in names if f"`{name}" not in README}
