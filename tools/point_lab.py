"""Point-rule lab for the CDNOW backtest (issue 19): fit once, cache, then try point rules in seconds.

``python tools/point_lab.py cache [dataset]`` runs the hybrid's training at the backtest's
calibration end exactly as ``clv.ml_backtest`` does and pickles what a point rule needs: the
validation window (features at C - h, labels to C; the BTYD of that window, the booster's
out-of-sample prediction and the blend weight), the inner training rows, and the holdout frame
(features at C, the BTYD and hybrid means over the holdout, the BTYD of C, the actual spend).
``python tools/point_lab.py diagnose`` splits the holdout MAE of the BTYD's and the hybrid's
median points by holdout buyer / non-buyer and by decile of the mean; ``experiment`` tries the
point-rule candidates of issue 19 on the validation window and the holdout side by side: the
median of the mean shrunk towards the BTYD's (lambda), a booster classifier's P(buy) carried to
the horizon by the BTYD's log-odds (mixture median with the BTYD draws' positive-part shape), and
(``/tmp`` one-off, see the report) a direct absolute-error booster.
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
    codes = btyd_intervals.frame_keys(frame)
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
        # spend draws (customers x 200) from each window's own BTYD: the shape of the positive part
        "valid_draws": valid_fit.sample_spend(clv.btyd_summary(valid), h_weeks).astype(np.float32),
        "holdout_draws": model_btyd.sample_spend(clv.btyd_summary(frame), horizon / btyd.DAYS_PER_WEEK).astype(np.float32),
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




def _logit(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def mixture_median(mean, p_buy, draws):
    """Median of (1 - P) * 0 + P * positive part; the positive part has the BTYD draws' shape
    (positive draws of the customer) rescaled to mean / P (the model's spend given a purchase)."""
    mean, p_buy = np.asarray(mean, float), np.asarray(p_buy, float)
    out = np.zeros(len(mean))
    take = p_buy >= 0.5
    level = 1.0 - 0.5 / np.where(take, p_buy, 1.0)
    d = np.asarray(draws, float)
    for i in np.flatnonzero(take):
        pos = d[i][d[i] > 0]
        if pos.size == 0 or mean[i] <= 0:
            continue
        out[i] = mean[i] / p_buy[i] * np.quantile(pos, level[i]) / pos.mean()
    return out


def experiment() -> None:
    import xgboost as xgb
    d = pickle.loads(CACHE.read_bytes())
    v, h = d["valid"], d["holdout"]
    w = d["blend"]
    yv = v["label_spend"].to_numpy(float)
    bv = np.clip(np.nan_to_num(v["btyd_expected_spend"].to_numpy(float)), 0, None)
    hv = w * d["valid_booster"] + (1 - w) * bv
    rv = v["btyd_spend_p50_ratio"].to_numpy(float)
    yh, bh, hh, rh = (h[c].to_numpy(float) for c in ("actual", "btyd_mean", "hybrid_mean", "p50_table"))
    print(f"blend w={w}; validation rows {len(yv)}, holdout {len(yh)}")
    print("shrink lambda: valid MAE | holdout MAE   (lambda=0 is the BTYD median)")
    for lam in np.linspace(0, 1, 11):
        print(f"  {lam:.1f} {_mae(yv, (lam * hv + (1 - lam) * bv) * rv):8.3f} {_mae(yh, (lam * hh + (1 - lam) * bh) * rh):8.3f}")
    # (a) classifier for P(buy in the label window), BTYD's logit as base margin
    inner, cols = d["inner"], d["columns"]
    params = {"objective": "binary:logistic", "eta": 0.03, "max_depth": 4, "min_child_weight": 50,
              "subsample": 0.8, "colsample_bytree": 0.8, "lambda": 5.0, "eval_metric": "logloss", "nthread": 2,
              "seed": 7}
    dtr = xgb.DMatrix(inner[cols].astype(float).to_numpy(), label=(inner["label_spend"] > 0).astype(float).to_numpy(),
                      feature_names=cols)
    dva = xgb.DMatrix(v[cols].astype(float).to_numpy(), label=(yv > 0).astype(float), feature_names=cols)
    booster = xgb.train(params, dtr, 1000, evals=[(dva, "v")], early_stopping_rounds=50, verbose_eval=False)
    rounds = booster.best_iteration + 1
    booster = booster[:rounds]
    pv = booster.predict(dva)
    pb = v["p_buy_btyd"].to_numpy(float)
    print(f"classifier rounds {rounds}; validation buyers {np.mean(yv > 0):.3f}, "
          f"mean P clf {pv.mean():.3f}, BTYD {pb.mean():.3f}; P>=.5 share clf {np.mean(pv >= .5):.3f} btyd {np.mean(pb >= .5):.3f}")
    dh = xgb.DMatrix(h[cols].astype(float).to_numpy(), feature_names=cols)
    ph_h = booster.predict(dh)
    pH_b = h["p_buy_btyd"].to_numpy(float)
    pH = 1 / (1 + np.exp(-(_logit(pH_b) + _logit(ph_h) - _logit(d["holdout_p_buy_h"]))))
    print(f"holdout buyers {np.mean(yh > 0):.3f}; mean P_H carried {pH.mean():.3f}, BTYD {pH_b.mean():.3f}; "
          f"P>=.5 share carried {np.mean(pH >= .5):.3f} btyd {np.mean(pH_b >= .5):.3f}")
    vd, hd = d["valid_draws"], d["holdout_draws"]
    # the platform's calibration in the large: one log-odds shift so the mean P on validation = buyer share
    from clv_platform.models.clv.booster import calibration_shift
    shift = calibration_shift(_logit(pv), yv > 0)
    pv_cal = 1 / (1 + np.exp(-(_logit(pv) + shift)))
    pH_cal = 1 / (1 + np.exp(-(_logit(pH_b) + _logit(ph_h) + shift - _logit(d["holdout_p_buy_h"]))))
    print(f"calibration shift {shift:+.3f}: mean P valid {pv_cal.mean():.3f}, P>=.5 share valid {np.mean(pv_cal >= .5):.3f}, "
          f"holdout {np.mean(pH_cal >= .5):.3f}")
    base_v, base_h = bv * rv, bh * rh
    print("mixture median            valid MAE | holdout MAE | paired holdout gain vs BTYD median (SE)")
    for name, (mv, pvv, mh, phh) in {
        "btyd mean, btyd P": (bv, pb, bh, pH_b),
        "hybrid mean, btyd P": (hv, pb, hh, pH_b),
        "btyd mean, clf P": (bv, pv, bh, pH),
        "hybrid mean, clf P": (hv, pv, hh, pH),
        "btyd mean, clf P cal": (bv, pv_cal, bh, pH_cal),
        "hybrid mean, clf P cal": (hv, pv_cal, hh, pH_cal),
    }.items():
        ph_point = mixture_median(mh, phh, hd)
        gain = np.abs(base_h - yh) - np.abs(ph_point - yh)
        se = gain.std(ddof=1) / np.sqrt(len(gain))
        gv = np.abs(base_v - yv) - np.abs(mixture_median(mv, pvv, vd) - yv)
        print(f"  {name:22s} {_mae(yv, mixture_median(mv, pvv, vd)):8.3f} {_mae(yh, ph_point):8.3f}   "
              f"{gain.mean():+.3f} ({se:.3f}); valid gain {gv.mean():+.4f} ({gv.std(ddof=1) / np.sqrt(len(gv)):.4f})")
    print(f"  reference medians: btyd {_mae(yv, bv * rv):8.3f} {_mae(yh, bh * rh):8.3f}; "
          f"hybrid {_mae(yv, hv * rv):8.3f} {_mae(yh, hh * rh):8.3f}")


if __name__ == "__main__":
    {"cache": cache, "diagnose": diagnose, "experiment": experiment}[sys.argv[1]](*sys.argv[2:])
