"""The served hybrid's level check (``train.level_check``): the retrained booster must keep the
correction of the BTYD that was validated, or the BTYD is served."""

from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pytest

from clv_platform.models import clv
from clv_platform.models.clv import train
from clv_platform.models.clv.booster import ClvModel
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform_tests.cheap_config import one_tweedie_config
from clv_platform_tests.demo_cache import demo_database


def _stand_in(served_over_btyd: float, validated_over_btyd: float, btyd_now: np.ndarray, btyd_valid: np.ndarray):
    """A model whose label-window forecast is ``served_over_btyd`` x the frame's BTYD, and a selection
    whose validated (out-of-sample) booster forecast was ``validated_over_btyd`` x the validation BTYD."""
    model = SimpleNamespace(label_horizon_days=90, blend=0.6, naive_weight=0.0,
                            predict_label_window=lambda frame: served_over_btyd * frame["btyd_expected_spend"].to_numpy())
    # blend 0.6: the validated mean is 0.6 x booster + 0.4 x BTYD
    booster = (validated_over_btyd - 0.4) / 0.6 * btyd_valid
    selection = SimpleNamespace(validation_prediction=booster, validated_booster=None)
    return model, selection, pd.DataFrame({"btyd_expected_spend": btyd_now}), pd.DataFrame(
        {"btyd_expected_spend": btyd_valid, "label_spend": btyd_valid})


def test_level_check_compares_the_served_and_validated_totals_over_the_btyd():
    rng = np.random.default_rng(3)
    now, valid = rng.gamma(0.5, 40.0, 400), rng.gamma(0.5, 30.0, 300)
    # the year-old demo store's figures: served 1.597 x, validated 1.148 x -> drift 0.331 > log(1.15)
    model, selection, frame, valid_frame = _stand_in(1.597, 1.148, now, valid)
    check = train.level_check(model, selection, valid_frame, frame, 0.15)
    assert check["validated_over_btyd"] == pytest.approx(1.148)
    assert check["served_over_btyd"] == pytest.approx(1.597)
    assert check["log_drift"] == pytest.approx(np.log(1.597 / 1.148))
    assert check["bound"] == pytest.approx(np.log(1.15))
    assert not check["consistent"] and "not the one validated" in check["reason"]
    assert check["customers"] == 400 and check["validation_customers"] == 300
    # a retrained booster 10 % low, or 12 % high: within the bound either way
    for served in (1.148 / 1.10, 1.148 * 1.12):
        assert train.level_check(*_stand_in(served, 1.148, now, valid)[:2], valid_frame, frame, 0.15)["consistent"]
    # 20 % low is beyond it as well (the check is two-sided)
    low = train.level_check(*_stand_in(1.148 / 1.2, 1.148, now, valid)[:2], valid_frame, frame, 0.15)
    assert not low["consistent"] and low["log_drift"] == pytest.approx(-np.log(1.2))
    # a retrained booster forecasting nothing has no ratio to the validated one: not the validated model
    nothing = train.level_check(*_stand_in(0.0, 1.148, now, valid)[:2], valid_frame, frame, 0.15)
    assert not nothing["consistent"] and nothing["log_drift"] is None and "no ratio" in nothing["reason"]
    # nothing to compare with: no bound, or no BTYD spend at the cutoff
    assert train.level_check(model, selection, valid_frame, frame, None)["consistent"]
    empty = train.level_check(model, selection, valid_frame, frame.assign(btyd_expected_spend=0.0), 0.15)
    assert empty["consistent"] and empty["reason"].startswith("not checked")


def test_the_btyd_replaces_the_hybrid_only_when_it_missed_the_validation_window_by_less():
    """The fallback trades the hybrid's drift for the BTYD's own measured miss: a store whose BTYD
    forecast the validation window 2.5 x its actual (log error -0.92) keeps a hybrid drifted by -0.46."""
    rng = np.random.default_rng(5)
    now, valid = rng.gamma(0.5, 40.0, 400), rng.gamma(0.5, 30.0, 300)
    # the returns-heavy store's figures: validated 0.474 x the BTYD, served 0.300 x (drift -0.457)
    model, selection, frame, valid_frame = _stand_in(0.300, 0.474, now, valid)
    missed = valid_frame.assign(label_spend=0.4 * valid)
    check = train.level_check(model, selection, missed, frame, 0.15)
    assert check["btyd_validation_log_error"] == pytest.approx(np.log(0.4))
    assert check["threshold"] == pytest.approx(-np.log(0.4)) and check["bound"] == pytest.approx(np.log(1.15))
    assert check["log_drift"] == pytest.approx(np.log(0.300 / 0.474)) and check["consistent"]
    assert "within the BTYD's own miss of the validation window's total (log error -0.916)" in check["reason"]
    assert check["reason"].endswith("the BTYD is no safer)")
    # a drift beyond the BTYD's miss still serves the BTYD
    far = train.level_check(*_stand_in(0.474 * 0.35, 0.474, now, valid)[:2], missed, frame, 0.15)
    assert not far["consistent"] and far["log_drift"] < np.log(0.4)
    assert "beyond the threshold 0.916" in far["reason"] and far["reason"].endswith("not the one validated)")
    # a BTYD that met the validation window's total: the bound alone (the year-old demo store's case)
    met = train.level_check(*_stand_in(1.597, 1.148, now, valid)[:2], valid_frame.assign(label_spend=1.05 * valid),
                            frame, 0.15)
    assert met["threshold"] == pytest.approx(np.log(1.15)) and not met["consistent"]
    # no spend in the validation window: no BTYD error to weigh, the bound alone
    silent = train.level_check(model, selection, valid_frame.assign(label_spend=0.0), frame, 0.15)
    assert silent["btyd_validation_log_error"] is None and silent["threshold"] == pytest.approx(np.log(1.15))
    assert not silent["consistent"]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    return demo_database(tmp_path_factory.mktemp("level") / "demo.duckdb", 2000, features=True)


def test_training_serves_the_btyd_when_the_retrained_booster_leaves_the_validated_level(demo_db, monkeypatch):
    config = one_tweedie_config(200)
    with duckdb.connect(str(demo_db), read_only=True) as conn:
        cutoff = scoring_cutoff(conn)
        frame, _ = clv.scoring_frame(conn, cutoff, config)
        trained = clv.train_clv(conn, cutoff, config, serving_frame=frame)
        check = trained.serving["level_check"]
        # the demo store's retrained booster keeps the validated level (measured: drift within 0.05)
        assert trained.serving["served"] == clv.HYBRID and check["consistent"]
        assert abs(check["log_drift"]) < 0.1 and check["customers"] == len(frame)
        # the validated (inner-window) booster on the same customers, for the record: close to the served one
        assert check["direct_log_drift"] is not None and abs(check["direct_log_drift"]) < 0.2
        assert check["threshold"] == pytest.approx(max(np.log(1.15), abs(check["btyd_validation_log_error"])))
        # and the validated win, judged again at the served level where the drift exceeds the BTYD's miss
        win = check["win_at_served_level"]
        assert win["consistent"] and win["log_drift"] == pytest.approx(check["log_drift"])
        assert win["btyd_validation_log_error"] == pytest.approx(check["btyd_validation_log_error"])
        # the same training whose final booster forecasts twice as much at the cutoff: the BTYD is served
        original = ClvModel.predict_label_window

        def doubled(self, scored):
            out = original(self, scored)
            return out * 2.0 if "_doubled" in scored else out

        monkeypatch.setattr(ClvModel, "predict_label_window", doubled)
        inflated = clv.train_clv(conn, cutoff, config, serving_frame=frame.assign(_doubled=1))
    doubled_check = inflated.serving["level_check"]
    # both boosters doubled on that frame: the direct comparison cannot see it, the BTYD's ratio does
    assert doubled_check["direct_log_drift"] == pytest.approx(check["direct_log_drift"])
    check = doubled_check
    assert inflated.serving["served"] == "btyd" and inflated.model.serves_btyd
    assert not check["consistent"] and check["log_drift"] > np.log(1.15)
    assert inflated.serving["reason"].startswith("the retrained hybrid forecasts the label window")
    assert "served_for" not in inflated.serving
    # the served model's validation metrics are then the BTYD's
    assert inflated.validation_metrics["normalized_gini"] == inflated.serving["btyd_metrics"]["normalized_gini"]
    assert inflated.validation_metrics["predicted_total"] == inflated.serving["btyd_metrics"]["predicted_total"]


def test_the_nightly_reading_warns_when_the_served_level_leaves_the_validated_one():
    from clv_platform.models.clv_assets import _level_tonight

    sidecar = {"serving": {"level_check": {"validated_over_btyd": 1.1, "bound": float(np.log(1.15)),
                                           "served_over_btyd": 1.12}}}
    tonight = _level_tonight(sidecar, 1.15)
    assert tonight["within_bound"] and "warning" not in tonight and tonight["at_training"] == 1.12
    assert tonight["log_drift"] == pytest.approx(np.log(1.15 / 1.1))
    # the BTYD refitted since, the features older: 1.5 x where 1.1 x was validated
    moved = _level_tonight(sidecar, 1.5)
    assert not moved["within_bound"] and moved.pop("warning") is True and moved["threshold"] == pytest.approx(np.log(1.15))
    assert moved["reason"].endswith("no longer the validated one; retrain (retrain_models_job))")
    silent = _level_tonight(sidecar, 0.0)
    assert not silent["within_bound"] and silent["log_drift"] is None and silent.pop("warning") is True
    assert _level_tonight(sidecar, None)["reason"] == "not checked: the BTYD is served"
    assert _level_tonight({"serving": {}}, 1.2)["reason"] == "not checked: the model was trained without a level check"
    # the training's threshold, where the BTYD's own miss of the validation window set it
    wide = {"serving": {"level_check": {**sidecar["serving"]["level_check"], "threshold": 0.9}}}
    kept = _level_tonight(wide, 1.5)
    assert kept["within_bound"] and kept["threshold"] == 0.9 and "warning" not in kept
    assert not _level_tonight(wide, 3.0)["within_bound"]
