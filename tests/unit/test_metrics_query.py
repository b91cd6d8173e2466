"""``mongodb_session_manager.metrics_query``: the one-release shim for the moved query API."""

from __future__ import annotations

import mongodb_session_manager.metrics as metrics
import mongodb_session_manager.metrics_query as shim


def test_the_shim_re_exports_the_query_names_unchanged() -> None:
    assert shim.__all__ == sorted(shim.__all__)
    assert {"AsyncMetricsQuery", "MetricsFilter", "MetricsQuery", "SessionMetrics"} <= set(shim.__all__)
    for name in shim.__all__:
        assert getattr(shim, name) is getattr(metrics, name)


def test_the_shim_says_it_is_temporary() -> None:
    assert shim.__doc__ is not None
    assert "one release" in shim.__doc__
