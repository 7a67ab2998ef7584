"""A cheaper clv.toml for tests that check what the pipeline does, not how accurate it is.

The packaged clv.toml searches eight objective candidates and lets `auto` fit Pareto/NBD beside
MBG/NBD in every training window: right for a store, most of the run time of a test that only
checks shapes, relations and that every asset materializes. `cheap_clv_config` writes the
packaged file with a few replacements (each must still match, so a changed clv.toml fails here
loudly instead of silently testing the full search):

* MBG/NBD instead of the auto choice (the auto choice is asserted in test_backtest.py and
  test_btyd_robust.py);
* three objective candidates instead of eight, one of each kind: Tweedie (log link, the BTYD
  offset), log1p target, absolute error (level calibration);
* one thread per booster: `make test` runs two workers on two cores;
* SHAP interaction values on 100 customers instead of 400 (their cost grows with features
  squared; the tests check that the table is written, not its values).

`use_clv_config` points every `load_config()` of the code location at such a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from clv_platform.models import clv
from clv_platform.models.clv import config as clv_config

CHEAP_REPLACEMENTS = {
    'model = "auto"': 'model = "mbgnbd"',
    "variance_powers = [1.2, 1.35, 1.5, 1.65, 1.8]": "variance_powers = [1.5]",
    '[[objectives]]\nname = "pseudohubererror"\nobjective = "reg:pseudohubererror"\nhuber_slope = 25.0\n': "",
    "nthread = 2": "nthread = 1",
    "interaction_sample = 400": "interaction_sample = 100",
}
CHEAP_CANDIDATES = ["tweedie_1.5", "log1p_squarederror", "absoluteerror"]


def cheap_clv_config(folder: Path) -> Path:
    """Write the packaged clv.toml with CHEAP_REPLACEMENTS to `folder`/clv_cheap.toml."""
    text = clv.default_config_path().read_text(encoding="utf-8")
    for old, new in CHEAP_REPLACEMENTS.items():
        assert old in text, f"clv.toml changed: {old!r} no longer found"
        text = text.replace(old, new)
    path = Path(folder) / "clv_cheap.toml"
    path.write_text(text, encoding="utf-8")
    config = clv.load_config(path)
    assert config.btyd_model == "mbgnbd" and config.xgboost.get("nthread") == 1 and config.interaction_sample == 100
    assert [c.name for c in clv.objective_candidates(config)] == CHEAP_CANDIDATES
    return path


def use_clv_config(mp: pytest.MonkeyPatch, path: Path) -> None:
    """Make `clv.load_config()` and the `[npd]` settings read `path` instead of the packaged file."""
    mp.setattr(clv_config, "default_config_path", lambda: Path(path))
    mp.setattr(clv, "default_config_path", lambda: Path(path))  # npd_assets reads it through the package


def use_files_only_store(mp: pytest.MonkeyPatch, folder: Path, file_currency: str | None = None) -> Path:
    """A files-only store in ``folder`` (``CLV_SOURCE=files``, the cheaper clv.toml, no live-API or
    path settings inherited from the environment); returns its inbox, created empty."""
    inbox = folder / "inbox"
    inbox.mkdir()
    # what the graph writes is checked, not the models' accuracy: the cheaper clv.toml
    use_clv_config(mp, cheap_clv_config(folder))
    for var in ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_SHOP_DOMAIN", "KLAVIYO_API_KEY", "CLV_DUCKDB_PATH", "CLV_AS_OF",
                "DAGSTER_HOME", "CLV_MODELS_DIR", "CLV_FILE_CURRENCY"):
        mp.delenv(var, raising=False)
    mp.setenv("CLV_SOURCE", "files")
    mp.setenv("CLV_DATA_DIR", str(folder))
    mp.setenv("CLV_INBOX_DIR", str(inbox))
    if file_currency:
        mp.setenv("CLV_FILE_CURRENCY", file_currency)
    return inbox


@contextmanager
def files_store_run(folder: Path, write: Callable[[Path], object],
                    file_currency: str | None = None) -> Iterator[SimpleNamespace]:
    """``clv-platform files`` on a files-only store in ``folder`` (``use_files_only_store``) after
    ``write(inbox)`` put the export there: yields ``code`` (the exit code), ``db`` (the store's
    DuckDB) and ``written`` (what ``write`` returned); the environment is restored afterwards. The
    body of a module fixture that builds one store for a test file."""
    from clv_platform.cli import run_files

    mp = pytest.MonkeyPatch()
    try:
        written = write(use_files_only_store(mp, folder, file_currency))
        code = run_files(SimpleNamespace(database=None, retrain=False, import_only=False, build_only=False))
        yield SimpleNamespace(code=code, db=folder / "files.duckdb", written=written)
    finally:
        mp.undo()


def one_tweedie_config(rounds: int, **changes) -> clv.ClvConfig:
    """The packaged config with one Tweedie candidate, at most ``rounds`` boosting rounds on one
    thread and MBG/NBD (plus ``changes``): a model trained in seconds, for tests of what a model
    carries and how it is stored and scored, not of how good it is."""
    base = clv.load_config()
    return dataclasses.replace(
        base, objectives=({"name": "tweedie", "objective": "reg:tweedie", "variance_powers": [1.5]},),
        xgboost={**base.xgboost, "num_boost_round": rounds, "nthread": 1}, btyd_model="mbgnbd", **changes)
