"""What a score means in time and money: the `[horizon]` section of `models/clv.toml`.

The data contract states the horizon and discount rate in its column descriptions, and it sits
below the models, so it reads them here rather than through `models.clv.load_config` (whose
values a test holds equal to these).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Horizon:
    horizon_days: int
    label_horizon_days: int
    annual_discount_rate: float


def load_horizon() -> Horizon:
    """The shipped `clv.toml`'s horizon, with the same defaults as `models.clv.load_config`."""
    text = resources.files("clv_platform.models").joinpath("clv.toml").read_text(encoding="utf-8")
    horizon = tomllib.loads(text).get("horizon", {})
    return Horizon(
        horizon_days=int(horizon.get("horizon_days", 365)),
        label_horizon_days=int(horizon.get("label_horizon_days", horizon.get("horizon_days", 365))),
        annual_discount_rate=float(horizon.get("annual_discount_rate", 0.10)),
    )
