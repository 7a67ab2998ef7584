"""Shared fixtures: every test gets its own DuckDB file and data folders under tmp_path."""

import pytest

from clv_platform.settings import clear_forced_environment


@pytest.fixture(autouse=True)
def _no_forced_environment():
    """`clv-platform demo`/`files` force the source for their process; a test's run must not leak it."""
    clear_forced_environment()
    yield
    clear_forced_environment()


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    """Point the platform's paths at tmp_path and make sure no live credentials leak in."""
    for var in ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_CLIENT_ID", "SHOPIFY_CLIENT_SECRET", "SHOPIFY_SHOP_DOMAIN",
                "KLAVIYO_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLV_INBOX_DIR", str(inbox))
    monkeypatch.setenv("CLV_DUCKDB_PATH", str(tmp_path / "clv.duckdb"))
    monkeypatch.setenv("CLV_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("CLV_SOURCE", raising=False)
    # paths derived from the data folder unless set: a developer's (or make's) values must not leak in
    for var in ("CLV_REPORTS_DIR", "CLV_REPORTS_URL", "CLV_REPORT_RETENTION", "CLV_ANALYTICS_PATH", "CLV_EXPORT_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path
