"""The hybrid's level must carry to the season ahead (``train.year_back_check``).

Found on a gift store (``benchmarks/awkward_stores.gift``: most customers buy once a year around
10 December, the data end on 31 October): the level learned on May to October said the BTYD
over-forecasts by half, the half year with December before it said the opposite, and the month-of-
year index did not hold the spike. The hybrid served forecast the year ahead at -64 % of the actual
(the BTYD -18 %).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from benchmarks.awkward_stores import gift
from clv_platform.backtest_cli import label_window
from clv_platform.models import clv, frames
from clv_platform.models.clv.config import HYBRID
from clv_platform.models.clv.score import scoring_frame
from clv_platform.models.clv.train import train_clv, year_back_check
from clv_platform.models.datasets import load_dataset

BOUND = 0.15


def _windows(e_valid, e_inner):
    return [{"label_end": "2023-11-01", "log_error": e_valid}, {"label_end": "2023-05-05", "log_error": e_inner}]


def test_a_level_that_flips_against_the_half_year_before_is_not_served():
    check = year_back_check(_windows(-0.542, 0.510), 180, BOUND)
    assert check["applies"] and not check["consistent"]
    assert check["level_log_error"] == pytest.approx(1.052)
    assert "does not carry to the season ahead" in check["reason"]


def test_a_level_that_errs_about_as_the_btyd_does_is_kept():
    # CDNOW-like errors (+0.097 on the validation window, -0.033 before it): the level misses the
    # older window by 0.130, within the BTYD's 0.033 + log(1.15) = 0.173
    check = year_back_check(_windows(0.097, -0.033), 180, BOUND)
    assert check["applies"] and check["consistent"]
    # the same sign on both windows: the level errs by less than the BTYD
    assert year_back_check(_windows(-0.288, -0.219), 180, BOUND)["consistent"]
    # the edge: 0.2 + log(1.15) = 0.340 allowed, 0.341 is not
    assert year_back_check(_windows(-0.1397, 0.2), 180, BOUND)["consistent"]
    assert not year_back_check(_windows(-0.1410, 0.2), 180, BOUND)["consistent"]


def test_only_an_inner_window_a_year_back_is_read_as_the_season_ahead():
    flipped = _windows(-0.9, 0.5)
    assert year_back_check(flipped, 167, BOUND)["applies"]  # 334 days: within 31 of a year
    assert year_back_check(flipped, 198, BOUND)["applies"]
    for days in (166, 199, 89, 103, 365):  # a short store's window, a closed-season store's year
        check = year_back_check(flipped, days, BOUND)
        assert not check["applies"] and check["consistent"], days
    missing = year_back_check([{"label_end": "2023-11-01", "log_error": -0.5},
                               {"label_end": "2023-05-05", "log_error": None}], 180, BOUND)
    assert missing["consistent"] and "no BTYD total error" in missing["reason"]
    assert year_back_check(flipped, 180, None)["consistent"]


def test_the_gift_store_is_served_the_btyd_and_says_why(tmp_path):
    path = tmp_path / "gift30.csv"
    gift(np.random.default_rng(30))[0].to_csv(path, index=False)
    calibration_end, holdout_end = date(2023, 11, 1), date(2024, 10, 31)
    conn = frames.staging_connection(load_dataset(str(path)).transactions)
    try:
        config = clv.load_config()
        label_days, _ = label_window(conn, calibration_end, holdout_end, config)
        config = config.for_backtest((holdout_end - calibration_end).days, label_days)
        frame, fitted = scoring_frame(conn, calibration_end, config)
        trained = train_clv(conn, calibration_end, config, HYBRID, btyd_family=(fitted.model, fitted.penalizer),
                            serving_frame=frame)
    finally:
        conn.close()
    check = trained.serving["year_back_check"]  # recorded only where the hybrid would have been served
    assert label_days == 180 and check["applies"]
    # May to October: the BTYD over-forecast; the half year with December before it: under
    assert check["validation_log_error"] < -0.3 and check["inner_log_error"] > 0.3
    assert check["level_log_error"] > check["inner_log_error"] + np.log1p(BOUND)
    assert trained.serving["served"] == "btyd" and trained.model.serves_btyd
    assert trained.serving["reason"].endswith("does not hold): serving the BTYD forecast")
