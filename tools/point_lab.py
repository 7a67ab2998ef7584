"""Point-rule lab for the CDNOW backtest (issue 19): fit once, cache, then try point rules in seconds.

``python tools/point_lab.py cache [dataset]`` runs the hybrid's training at the backtest's
calibration end exactly as ``clv.ml_backtest`` does and pickles what a point rule needs: the
validation window (features at C - h, labels to C; the BTYD of that window, the booster's
out-of-sample prediction and the blend weight), the inner training rows, and the holdout frame
(features at C, the BTYD and hybrid means over the holdout, the BTYD of C, the actual spend).
``python tools/point_lab.py diagnose`` splits the holdout MAE of the BTYD's and the hybrid's
median points by holdout buyer / non-buyer and by decile of the mean.
Not part of the platform; a development tool.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path("/tmp/i19_point_lab.pkl")


def cache(dataset: str = "cdnow-full") -> None:
    from clv_platform.backtest_cli import default_window
    from clv_platform.models import btyd, btyd_intervals, clv, frames
    from clv_platform.models.clv import train as train_module
    from clv_platform.models.datasets import load_dataset

    loaded = load_dataset(dataset)
    cal, hold, _ = default_window(loaded)
    config = clv.load_config().for_backtest((hold - cal).days)
    conn = frames.staging_connection(loaded.transactions)
    captured = {}
    original = train_module.select_objective

    def spy(candidates, inner, valid, columns, variant):
        captured.setdefault(variant, {"inner": inner, "valid": valid, "columns": columns})
        return original(candidates, inner, valid, columns, variant)

    train_module.select_objective = spy
    cutoff = cal.date()
    horizon = (hold - cal).days
    frame, model_btyd = clv.scoring_frame(conn, cutoff, config)
    hybrid = clv.train_clv(conn, cutoff, config, clv.HYBRID)
    ratio = frame["btyd_horizon_ratio"].to_numpy()
    hybrid_mean = replace(hybrid.model, serves_btyd=False).predict(frame, horizon, ratio)
    btyd_mean = replace(hybrid.model, serves_btyd=True).predict(frame, horizon, ratio)
    summary = btyd.summarize(loaded.transactions, cal, hold)
    actual = summary["holdout_spend"].reindex(frame["customer_id"].astype(str)).fillna(0.0).to_numpy()
    codes = btyd_intervals.interval_keys(frame["frequency"], frame["first_to_last_order_days"], frame["T_days"])
    table = btyd_intervals.interval_table(model_btyd, codes, horizon / btyd.DAYS_PER_WEEK)
    def p_buy(model, f, weeks):
        # P(at least one purchase in `weeks`) from the BTYD's own draws (exact only for (M)BG/NBD)
        counts = model.transactions.sample_purchases(
            weeks, f["frequency"].to_numpy(float), f["first_to_last_order_days"].to_numpy(float) / 7.0,
            f["T_days"].to_numpy(float) / 7.0, 400, np.random.default_rng(0))
        return (counts > 0).mean(axis=1)

    valid = hybrid.validation_frame
    valid_fit = clv.fit_btyd_at(valid, config)
    h_weeks = config.label_horizon_days / btyd.DAYS_PER_WEEK
    out = {
        "config": config, "horizon": horizon, "cutoff": cutoff,
        "valid": valid.assign(p_buy_btyd=p_buy(valid_fit, valid, h_weeks)), "inner": captured[clv.HYBRID]["inner"],
        "columns": captured[clv.HYBRID]["columns"],
        "valid_booster": hybrid.selection.validation_prediction, "blend": hybrid.model.blend,
        "serving": hybrid.serving, "selection": hybrid.selection.as_dict(),
        "holdout_p_buy_h": p_buy(model_btyd, frame, h_weeks),
        "holdout": frame.assign(actual=actual, hybrid_mean=hybrid_mean, btyd_mean=btyd_mean,
                                p50_table=table.lookup(codes)[1],
                                p_buy_btyd=p_buy(model_btyd, frame, horizon / btyd.DAYS_PER_WEEK)),
        "model": hybrid.model,
    }
    CACHE.write_bytes(pickle.dumps(out))
    print("cached", CACHE, {k: v for k, v in hybrid.serving.items() if "comparison" not in k})


def _mae(y, p):
    return float(np.mean(np.abs(np.asarray(y) - np.asarray(p))))


def diagnose() -> None:
    d = pickle.loads(CACHE.read_bytes())
    h = d["holdout"]
    y = h["actual"].to_numpy()
    p50 = h["p50_table"].to_numpy()
    points = {"btyd_median": h["btyd_mean"].to_numpy() * p50, "hybrid_median": h["hybrid_mean"].to_numpy() * p50,
              "btyd_mean": h["btyd_mean"].to_numpy(), "hybrid_mean": h["hybrid_mean"].to_numpy()}
    buyers = y > 0
    print(f"holdout customers {len(y)}, buyers {buyers.sum()} ({buyers.mean():.3f})")
    for name, p in points.items():
        print(f"{name:14s} MAE {_mae(y, p):7.3f}  buyers {_mae(y[buyers], p[buyers]):8.3f}  "
              f"non-buyers {_mae(y[~buyers], p[~buyers]):7.3f}  zero share {(p == 0).mean():.3f}  "
              f"sum {p.sum():10.0f}")
    order = np.argsort(-h["hybrid_mean"].to_numpy(), kind="stable")
    deciles = np.empty(len(y), int)
    deciles[order] = np.arange(len(y)) * 10 // len(y)
    print("decile of hybrid mean: actual mean | abs-error sums btyd_median vs hybrid_median")
    for k in range(10):
        m = deciles == k
        print(k + 1, f"{y[m].mean():8.2f}", f"{np.abs(y[m] - points['btyd_median'][m]).sum():10.0f}",
              f"{np.abs(y[m] - points['hybrid_median'][m]).sum():10.0f}",
              f"pred med b/h {points['btyd_median'][m].mean():7.2f} {points['hybrid_median'][m].mean():7.2f}")


if __name__ == "__main__":
    {"cache": cache, "diagnose": diagnose}[sys.argv[1]](*sys.argv[2:])
