"""The served store-total interval: the process interval widened by the method's recorded total error."""

import math
from datetime import date

import duckdb
import pandas as pd
import pytest

from clv_platform.models import total_interval
from clv_platform.models.clv.train import total_error_record
from clv_platform.models.clv_assets import _total_interval_sql, total_interval as scores_total_interval


def test_widen_adds_the_t_scaled_rms_error_in_quadrature_in_log_space():
    # errors +0.1 and -0.2: rms sqrt(0.025) = 0.158114; t(0.9, 2) = 1.885618; horizon 4 windows -> x 2
    b = 1.8856180831641267 * math.sqrt(0.025) * 2.0
    out = total_interval.widen(1000.0, 950.0, 1050.0, [0.1, -0.2], horizon_ratio=4.0)
    assert out["half_width"] == pytest.approx(0.5962847939999439, rel=1e-12) == pytest.approx(b)
    assert out["p10"] == pytest.approx(1000.0 * math.exp(-math.sqrt(math.log(1000 / 950) ** 2 + b ** 2)), rel=1e-12)
    assert out["p90"] == pytest.approx(1000.0 * math.exp(math.sqrt(math.log(1050 / 1000) ** 2 + b ** 2)), rel=1e-12)
    assert (out["process_p10"], out["process_p90"], out["windows"]) == (950.0, 1050.0, 2)
    assert out["rule"].startswith("symmetric t")
    # no process noise: exactly total x exp(-+ t * rms * sqrt(ratio)), symmetric in log space
    bare = total_interval.widen(500.0, 500.0, 500.0, [0.3], horizon_ratio=1.0)
    assert bare["t_quantile"] == pytest.approx(3.077683537175253)
    assert bare["p10"] == pytest.approx(500.0 * math.exp(-3.077683537175253 * 0.3))
    assert bare["p90"] == pytest.approx(500.0 * math.exp(3.077683537175253 * 0.3))
    assert bare["p10"] * bare["p90"] == pytest.approx(500.0 ** 2)
    # the sign of an error does not matter (no shift), only its size
    assert total_interval.widen(500.0, 500.0, 500.0, [-0.3])["p90"] == pytest.approx(bare["p90"])
    # more windows: a smaller t for the same rms
    assert total_interval.widen(500.0, 500.0, 500.0, [0.3, -0.3, 0.3])["p90"] < bare["p90"]


def test_without_errors_the_process_interval_is_served_and_labelled():
    out = total_interval.widen(1000.0, 950.0, 1050.0, [], reason="too short a history: 0 of 2 windows")
    assert (out["p10"], out["p90"]) == (950.0, 1050.0)
    assert out["rule"] == "process only: too short a history: 0 of 2 windows"
    assert out["windows"] == 0 and out["half_width"] == 0.0


def test_method_errors_of_a_level_calibrated_forecast_are_its_level_missing_the_older_window():
    assert total_interval.method_errors([0.3, 0.1], level_calibrated=False) == [0.3, 0.1]
    assert total_interval.method_errors([0.3, 0.1], level_calibrated=True) == pytest.approx([-0.2])
    assert total_interval.method_errors([0.3], level_calibrated=True) == []
    assert total_interval.method_errors([None, float("nan"), 0.2], level_calibrated=False) == [0.2]


def _window(predicted: list[float], actual: list[float], end: str) -> pd.DataFrame:
    return pd.DataFrame({"btyd_expected_spend": predicted, "label_spend": actual,
                         "window_end": pd.Timestamp(end)})


def test_training_records_the_btyd_errors_of_the_validation_window_and_the_one_before():
    cutoff, h = date(2026, 6, 30), 91
    valid = _window([60.0, 40.0], [70.0, 50.0], "2026-06-30")  # 100 predicted, 120 actual
    inner = pd.concat([_window([150.0, 50.0], [100.0, 80.0], "2026-03-31"),  # 200 / 180: labels end C - h
                       _window([1.0], [100.0], "2026-03-01")])  # overlapping with the validation window: unused
    record = total_error_record(valid, inner, cutoff, h, level_calibrated=False,
                                served_metrics={"predicted_total": 100.0, "actual_total": 120.0})
    assert record["btyd_log_errors"] == pytest.approx([math.log(1.2), math.log(0.9)])
    assert record["method_log_errors"] == pytest.approx([math.log(1.2), math.log(0.9)])
    assert [w["label_end"] for w in record["windows"]] == ["2026-06-30", "2026-03-31"]
    assert [w["predicted_total"] for w in record["windows"]] == [100.0, 200.0]
    assert record["served_validation_log_error"] == pytest.approx(math.log(1.2))
    hybrid = total_error_record(valid, inner, cutoff, h, level_calibrated=True)
    assert hybrid["method_log_errors"] == pytest.approx([math.log(0.9) - math.log(1.2)])
    # a short history: no inner window h before the validation window
    short = total_error_record(valid, inner.iloc[:0], cutoff, h, level_calibrated=True)
    assert short["btyd_log_errors"] == pytest.approx([math.log(1.2)]) and short["method_log_errors"] == []
    assert short["reason"].startswith("too short a history: 1 of 2 label windows of 91 days")


def _sidecar(errors, horizon=365, label=91):
    return {"horizon_days": horizon, "serving": {"total_error": {
        "label_days": label, "method_log_errors": errors, "btyd_log_errors": errors, "reason": "x"}}}


def test_scores_metadata_serve_the_widened_interval_and_keep_the_process_one():
    scores = pd.DataFrame({"predicted_clv": [100.0, 300.0, 600.0], "predicted_clv_p10": [0.0, 100.0, 200.0],
                           "predicted_clv_p90": [300.0, 700.0, 1400.0]})
    variance = sum(((h - l) / (2 * 1.2815515655446004)) ** 2 for l, h in ((0, 300), (100, 700), (200, 1400)))
    process_low, process_high = 1000.0 - 1.2815515655446004 * math.sqrt(variance), 1000.0 + 1.2815515655446004 * math.sqrt(variance)
    plain = scores_total_interval(scores)
    assert plain["total_predicted_clv_p10"] == pytest.approx(process_low)
    assert plain["total_predicted_clv_p90"] == pytest.approx(process_high)
    served = scores_total_interval(scores, _sidecar([0.1, -0.2]))
    expected = total_interval.widen(1000.0, process_low, process_high, [0.1, -0.2], 365 / 91)
    assert served["total_predicted_clv_p10"] == pytest.approx(expected["p10"], rel=1e-12)
    assert served["total_predicted_clv_p90"] == pytest.approx(expected["p90"], rel=1e-12)
    assert served["total_predicted_clv_p10_process"] == pytest.approx(process_low)
    assert served["total_predicted_clv_p10"] < process_low and served["total_predicted_clv_p90"] > process_high
    assert served["total_interval_error_windows"] == 2 and served["total_interval_rule"].startswith("symmetric t")
    # a model trained before the errors were recorded: the process interval, labelled
    old = scores_total_interval(scores, {"horizon_days": 365, "serving": {}})
    assert old["total_predicted_clv_p10"] == pytest.approx(process_low)
    assert old["total_interval_rule"].startswith("process only: the model records no validation total errors")
    # DuckDB's aggregation gives the same figures
    with duckdb.connect() as conn:
        conn.execute("create schema scores")
        conn.register("frame", scores)
        conn.execute("create table scores.customer_clv as select * from frame")
        sql = _total_interval_sql(conn, _sidecar([0.1, -0.2]))
    for key in ("total_predicted_clv_p10", "total_predicted_clv_p90", "total_predicted_clv_p10_process",
                "total_predicted_clv_p90_process", "total_interval_error_windows"):
        assert sql[key] == pytest.approx(served[key], rel=1e-12), key


def test_a_window_that_holds_a_stretch_without_orders_records_no_error():
    """A shop closed from February to September: the validation window's BTYD was fitted inside the
    closure and its labels hold part of it, so its error (log 6.28 at the winter store) is the
    closure's, not the method's: it is left out, and so would the older window be."""
    from clv_platform.transforms.order_gaps import OrderGap

    cutoff, h = date(2026, 6, 30), 91
    valid = _window([60.0, 40.0], [70.0, 50.0], "2026-06-30")
    inner = _window([150.0, 50.0], [100.0, 80.0], "2026-03-31")
    closed = OrderGap(date(2026, 2, 1), date(2026, 4, 15), 74, 30.0)  # overlaps both: [C - 2h, C - h] and after
    late = OrderGap(date(2026, 5, 1), date(2026, 5, 20), 20, 30.0)  # the validation window's only
    record = total_error_record(valid, inner, cutoff, h, level_calibrated=False, stretches=[late])
    assert [w["log_error"] for w in record["windows"]] == [None, pytest.approx(math.log(0.9))]
    assert record["windows"][0]["stretch"].startswith("no orders from 2026-05-01 to 2026-05-20 (20 days)")
    assert record["method_log_errors"] == pytest.approx([math.log(0.9)])
    both = total_error_record(valid, inner, cutoff, h, level_calibrated=False, stretches=[closed])
    assert both["method_log_errors"] == [] and both["btyd_log_errors"] == []
    assert both["reason"] == ("the label windows hold no orders from 2026-02-01 to 2026-04-15 (74 days) where the store "
                              "had 30.0 a day around it: their total errors measure that stretch, not the method")
    # a stretch before both windows' feature cutoffs leaves them as they were
    early = OrderGap(date(2025, 10, 1), date(2025, 12, 1), 62, 30.0)
    assert total_error_record(valid, inner, cutoff, h, level_calibrated=False, stretches=[early])["method_log_errors"] \
        == pytest.approx([math.log(1.2), math.log(0.9)])
