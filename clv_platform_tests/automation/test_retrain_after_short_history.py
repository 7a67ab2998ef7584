"""A store whose first import is too short to train serves BTYD stand-ins; the import that
lengthens its history trains and registers real models (``sensors.needs_training``), instead of
the stand-ins being served until the weekly retrain."""

import gc
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest

from clv_platform.automation.sensors import needs_training
from clv_platform.cli import run_files
from clv_platform.models import clv, registry
from clv_platform.settings import load_settings
from clv_platform_tests.models.test_short_history import _orders, build_files_store


def _shifted(orders: pd.DataFrame, days: int) -> pd.DataFrame:
    return orders.assign(order_date=(pd.to_datetime(orders["order_date"]) + pd.Timedelta(days=days)).dt.date.astype(str))


def test_an_import_that_lengthens_a_short_history_trains_and_registers_a_model(tmp_path):

    mp = pytest.MonkeyPatch()
    try:
        # seven weeks of orders from late 2024: too short to train (BTYD stand-ins served)
        first = _shifted(_orders(repeat=True, customers=400, days=49, seed=5), -400)
        code, _ = build_files_store(mp, tmp_path, first, ())
        assert code == 0
        db, models = tmp_path / "files.duckdb", load_settings().models_dir
        with duckdb.connect(str(db), read_only=True) as conn:
            before = conn.execute("select objective from ml.model_runs where model_name = 'clv_xgb'").fetchall()
        assert before == [(clv.BTYD_ONLY,)]
        assert needs_training(db, models)
        # the same customers' next twelve months, as a second export in the inbox: now there are
        # training windows (features at C - 2h, labels up to C - h)
        later = _shifted(_orders(repeat=True, customers=400, days=360, seed=6), -351)
        later["order_id"] = "L" + later["order_id"]
        later.to_csv(tmp_path / "inbox" / "later.csv", index=False)
        code = run_files(SimpleNamespace(database=None, retrain=False, import_only=False, build_only=False))
        gc.collect()
        assert code == 0
        with duckdb.connect(str(db), read_only=True) as conn:
            runs = conn.execute("select objective, is_registered from ml.model_runs where model_name = 'clv_xgb' "
                                "order by trained_at").fetchall()
            served = registry.registered_paths(conn)
        trains_again = needs_training(db, models)
    finally:
        mp.undo()
    # the second import trained a booster model, compared it with the stand-in on its validation
    # window, and registered it
    assert len(runs) == 2 and runs[0][0] == clv.BTYD_ONLY and runs[1][0] != clv.BTYD_ONLY and runs[1][1]
    sidecar = registry.read_sidecar(served[registry.DEFAULT_MODEL_NAME])
    assert sidecar["booster_file"] is not None and not registry.short_history_stand_in(sidecar)
    # the next-purchase model was tried too: whatever is served now is no short-history stand-in
    assert not registry.short_history_stand_in(registry.read_sidecar(served[registry.NPD_MODEL_NAME]))
    assert not trains_again
