"""The CLV training's window BTYD fits take the family served at the cutoff (``clv.windows.WindowFits``):
the booster's offset correction is learned against the windows' BTYD and applied to the served one."""

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from benchmarks.awkward_stores import onetime
from clv_platform.models import btyd
from clv_platform.models.clv import load_config, windows

CUTOFF = date(2023, 3, 3)


@pytest.fixture(scope="module")
def one_time_store():
    """Features at 2023-03-03 of a store of 88 % one-time buyers (2,429 customers by then): the
    unpenalized Pareto/NBD runs to the edge of its parameter space there, so ``auto`` serves a
    penalized fit."""
    orders = onetime(np.random.default_rng(3))
    orders["order_date"] = pd.to_datetime(orders["order_date"])
    summary = btyd.summarize(orders, pd.Timestamp(CUTOFF))
    return pd.DataFrame({"customer_id": summary.index, "frequency": summary["frequency"].to_numpy(),
                         "first_to_last_order_days": (summary["recency"] * 7).round().to_numpy(),
                         "T_days": (summary["T"] * 7).round().to_numpy(),
                         "monetary": summary["monetary"].to_numpy()})


def test_each_window_fits_the_served_family_or_says_why_not(one_time_store):
    config = load_config()
    own = windows.WindowFits(config).fit(one_time_store, CUTOFF)
    assert own.model == btyd.MBGNBD  # the window's own choice

    pinned = windows.WindowFits(config, family=(btyd.PARETO_NBD, 0.001))
    model = pinned.fit(one_time_store, CUTOFF)
    assert (model.model, model.penalizer) == (btyd.PARETO_NBD, 0.001) and pinned.unpinned == {}
    assert btyd.degeneracy(model, windows.btyd_summary(one_time_store)) is None
    # only the family comes from the cutoff: the parameters are this window's own fit
    assert model.log_likelihood == pytest.approx(
        btyd.fit_btyd(windows.btyd_summary(one_time_store), btyd.PARETO_NBD, 0.001).log_likelihood, rel=1e-6)
    assert pinned.record()["windows"] == {"2023-03-03": {"model": btyd.PARETO_NBD, "penalizer": 0.001}}
    assert pinned.record()["family"] == btyd.PARETO_NBD
    assert pinned.fit(one_time_store, CUTOFF) is model and pinned.fitted == 1  # once per cutoff

    # the unpenalized Pareto/NBD is degenerate at this window: its own choice, and the record says so
    edge = windows.WindowFits(config, family=(btyd.PARETO_NBD, 0.0))
    fallback = edge.fit(one_time_store, CUTOFF)
    assert (fallback.model, fallback.penalizer) == (own.model, own.penalizer)
    assert list(edge.unpinned) == ["2023-03-03"] and "not usable: parameter at the boundary" in edge.unpinned["2023-03-03"]


def test_a_configured_family_or_a_last_resort_family_is_not_pinned():
    config = load_config()
    assert windows.WindowFits(replace(config, btyd_model=btyd.MBGNBD), family=(btyd.PARETO_NBD, 0.0)).family is None
    # BG/NBD is only the penalized last resort of auto: a window fits auto rather than copy it
    assert windows.WindowFits(config, family=(btyd.BGNBD, 0.01)).family is None
    assert windows.WindowFits(config, family=None).record()["reason"] == "each window chooses its own family"


def test_scoring_says_when_the_served_btyd_is_not_the_family_the_hybrid_was_trained_against():
    from clv_platform.models.clv_assets import _family_check

    sidecar = {"model_version": "v7", "serving": {"window_btyd": {"family": btyd.MBGNBD, "penalizer": 0.0}}}
    assert _family_check(sidecar, (btyd.MBGNBD, 0.0), serves_btyd=False) == {
        "btyd_family_trained_against": btyd.MBGNBD, "btyd_family_served": btyd.MBGNBD,
        "btyd_family_matches_training": True}
    refitted = _family_check(sidecar, (btyd.PARETO_NBD, 0.001), serves_btyd=False)
    assert refitted["btyd_family_matches_training"] is False
    assert "trained against mbgnbd BTYD fits and the BTYD served now is pareto_nbd" in refitted["warning"]
    assert "retrain" in refitted["warning"]
    # a served BTYD forecast has no correction to go stale; an older model (no record) says nothing
    assert _family_check(sidecar, (btyd.PARETO_NBD, 0.001), serves_btyd=True) == {}
    assert _family_check({"serving": {}}, (btyd.PARETO_NBD, 0.001), serves_btyd=False) == {}
    assert _family_check(sidecar, None, serves_btyd=False) == {}
