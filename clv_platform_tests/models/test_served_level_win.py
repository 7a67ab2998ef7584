"""The hybrid's validated win must survive the level it is served at (``train.served_level_win``).

Found on the no-churn store of ``benchmarks/awkward_stores`` (seed 21): the blend beat the BTYD on
the validation window by a point MAE of 0.163 (SE 0.080), the retrained booster served 3.6 % above
the validated level (within ``level_check``'s 0.14), at that level the validation gain was 0.024,
and on the holdout the hybrid lost to the BTYD by 2.52 (SE 0.66).
"""

from __future__ import annotations

import numpy as np
import pytest

from clv_platform.models.clv.train import ranking_at_level, served_level_win

Z = 1.645


def _store(n: int = 4000, seed: int = 3):
    """Actual spend, a BTYD 4 % over it, and a hybrid whose only edge is the right level."""
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 50.0, n)
    noise = rng.normal(0.0, 20.0, n)
    return y, np.clip(1.04 * (y + noise), 0.0, None), np.clip(y + noise, 0.0, None)


def identity(mean):
    return mean


def _leads(leads: bool = True):
    return lambda mae, factor: {"gini_gain": 0.02, "gini_gain_se": 0.005, "leads": leads}


def test_a_win_that_was_the_level_is_gone_at_the_served_level():
    y, btyd, hybrid = _store()
    win = served_level_win(y, btyd, identity, hybrid, np.log(1.04), btyd_miss=0.005, z=Z)
    # at the validated level the hybrid wins beyond noise; moved 4 % up it is the BTYD again
    assert win["validated_gain"] > Z * win["validated_gain_se"] > 0
    assert win["bar"] == pytest.approx(Z * win["validated_gain_se"])
    assert win["gain"] == pytest.approx(0.0, abs=1e-9)
    assert win["mae"] == pytest.approx(win["btyd_mae"])
    assert not win["consistent"] and win["served_for"] is None
    assert "does not survive the served level" in win["reason"]
    # a ranking lead does not serve a hybrid without a lower MAE
    ranked = served_level_win(y, btyd, identity, hybrid, np.log(1.04), btyd_miss=0.005, z=Z, ranking=_leads())
    assert not ranked["consistent"] and ranked["ranking"] is None


def test_a_drift_the_win_absorbs_or_that_helps_is_kept():
    y, btyd, hybrid = _store()
    small = served_level_win(y, btyd, identity, hybrid, np.log(1.005), btyd_miss=0.0, z=Z)
    assert small["consistent"] and small["served_for"] == "mae"
    assert small["bar"] < small["gain"] < small["validated_gain"]
    # a hybrid validated 3 % high, served at the actual's level: the drift helps, however high the bar
    helped = served_level_win(y, btyd, identity, 1.03 * hybrid, np.log(1 / 1.03), btyd_miss=0.0, z=200.0)
    assert helped["consistent"] and helped["gain"] > helped["validated_gain"] and helped["gain"] < helped["bar"]


def test_a_drift_within_the_btyds_own_miss_is_not_judged():
    y, btyd, hybrid = _store()
    win = served_level_win(y, btyd, identity, hybrid, np.log(1.04), btyd_miss=-0.06, z=Z)
    assert win["consistent"] and "gain" not in win
    assert "within the BTYD's own miss" in win["reason"]
    # no recorded miss: judged
    assert not served_level_win(y, btyd, identity, hybrid, np.log(1.04), btyd_miss=None, z=Z)["consistent"]


def test_a_gain_within_noise_needs_a_ranking_lead():
    y, btyd, hybrid = _store()
    drift = np.log(1.038)  # the gain at the served level is positive, below the validated bar
    asked = []
    kept = served_level_win(y, btyd, identity, hybrid, drift, btyd_miss=0.0, z=Z,
                            ranking=lambda mae, factor: asked.append((mae, factor)) or _leads()(mae, factor))
    assert 0 < kept["gain"] < kept["bar"] and kept["total_error"] == pytest.approx(0.0427, abs=1e-3)
    assert kept["consistent"] and kept["served_for"] == "ranking" and kept["ranking"]["leads"]
    assert asked == [(pytest.approx(kept["mae"]), pytest.approx(1.038))]
    assert "its ranking leads (Gini gain +0.02, SE 0.005)" in kept["reason"]
    no_lead = served_level_win(y, btyd, identity, hybrid, drift, btyd_miss=0.0, z=Z, ranking=_leads(False))
    assert not no_lead["consistent"] and "(Gini gain +0.02, SE 0.005): the win does not" in no_lead["reason"]


def test_the_ranking_way_is_the_serving_rules():
    rng = np.random.default_rng(5)
    y = rng.gamma(2.0, 50.0, 3000)
    hybrid = np.clip(y + rng.normal(0.0, 20.0, y.size), 0.0, None)
    btyd = np.clip(y + rng.normal(0.0, 60.0, y.size), 0.0, None)
    lead = ranking_at_level(y, btyd, hybrid, btyd_mae=30.0, naive_gini=None, z=Z, max_total_error=0.15)
    ok = lead(25.0, 1.0)
    assert ok["leads"] and ok["gini_gain"] > Z * ok["gini_gain_se"] > 0
    assert not lead(31.0, 1.0)["leads"]  # no lower point MAE than the BTYD's
    assert not lead(25.0, 1.2)["leads"]  # the total 20 % over at the served level
    assert not ranking_at_level(y, btyd, hybrid, 30.0, naive_gini=0.99, z=Z, max_total_error=0.15)(25.0, 1.0)["leads"]
    assert not ranking_at_level(y, hybrid, btyd, 30.0, None, Z, 0.15)(25.0, 1.0)["leads"]  # ranks below the BTYD


def test_the_point_rule_is_applied_at_the_served_level():
    y, btyd, hybrid = _store()
    halved = served_level_win(y, btyd, lambda mean: 0.5 * mean, 2.0 * hybrid, np.log(1.04), btyd_miss=0.0, z=Z)
    plain = served_level_win(y, btyd, identity, hybrid, np.log(1.04), btyd_miss=0.0, z=Z)
    assert halved["mae"] == pytest.approx(plain["mae"]) and halved["validated_mae"] == pytest.approx(plain["validated_mae"])
