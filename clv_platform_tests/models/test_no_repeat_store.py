"""A store of one-time buyers over most of a year: told apart from a short history. Its own module:
``test_short_history``'s module-scoped stores keep their clv.toml patched until the module ends."""

import pandas as pd
import pytest

from clv_platform_tests.models.test_short_history import _orders, build_files_store


def test_a_year_of_one_time_buyers_is_told_apart_from_a_short_history(tmp_path):
    """A year of orders where nobody bought twice was reported like a few weeks of history ('no
    training window with customers among those ending at ...'); the reason now says what is missing:
    customers enough in every window, but no repeat behaviour to learn yet."""
    mp = pytest.MonkeyPatch()
    try:
        code, assets = build_files_store(mp, tmp_path, _orders(repeat=False, days=300), ("ml/clv_model",))
    finally:
        mp.undo()
    assert code == 0
    reason = assets["ml/clv_model"]["serving_reason"]
    cutoff = pd.to_datetime(_orders(repeat=False, days=300)["order_date"]).max().date()
    assert reason == (f"history too short to train: no customer has bought on two different days by {cutoff}: there "
                      "is no repeat behaviour to learn yet")
