"""Transaction files of stores unlike the demo and CDNOW, for `clv-platform backtest --dataset FILE`.

Not real data: seeded stand-ins for shapes real Shopify stores have and the demo store does not,
to see what the backtest and the BTYD fits do on them (time taken, families chosen, totals):

* `nochurn.csv`: 3,000 customers who never stop buying (gamma purchase rates, no dropout) over three
  years; times with a UTC-8 offset, ids written like floats (`10000.0`), 3 % of orders followed by
  a return of 1.5 times the order three days later. Every order comes from one spend distribution.
* `onetime.csv`: 5,000 customers, 88 % of them one-time buyers; the rest buy 1-5 more times a
  few weeks apart and then stop.
* `short4m.csv`: the last four months of `nochurn.csv` (a short history).
* `subscription.csv` (seed 11): 2,500 subscribers who buy every 30 days (±2) at one of three prices
  (5 % of orders three times that) until they cancel: regular, not Poisson, purchase timing.
* `launch.csv` (seed 12): 3,000 customers whose first orders all fall in a launch week, seven
  months of history, Pareto-tailed order values and 1 % of customers spending 50 times as much.
* `gift.csv` (seed 5): 3,000 customers, 60 % of them buy once a year around 10 December (each year
  20 % stop), the rest at gamma rates with exponential lifetimes; it ends on 2024-10-31, before the
  season. ``gift()`` also returns who is still a customer then.
* `b2b.csv` (seed 9): 150 business accounts ordering every 7, 14 or 28 days (± 20 %) until they stop,
  lognormal order sizes around 1,800, 10 % of orders followed by a partial credit; day-first dates
  (`31/12/2024`) and the headers `Customer, Order Date, Order Total`.
* `lapse.csv` (seed 13): 1,500 customers who all arrive in the first 100 days of 2024, buy one to
  five times 10-120 days apart and stop; 30 % of orders are refunded at 1-1.5 times their amount
  within 20 days (returns larger than the order). Nobody is left by the end: the BTYD, which
  expects customers to stay, over-forecasts more with every month.
* `holiday.csv` (seed 14): 4,000 accounts of a wholesale-like store over the span of the UCI Online
  Retail II export (2009-12-01 to 2011-12-09) with its two traits the Online-Retail-shaped test export
  lacks: the autumn ramp (purchase intensity per month 0.75 in January and February, 1.35, 1.5 and
  1.75 in September to November, the year's mean about 1.06) and a history cut at its start (a
  quarter of the accounts were already customers and first appear in its first month). Gamma
  purchase rates, exponential lifetimes (mean 700 days), lognormal order values with 2 % of
  accounts ten times larger, 3 % of orders partly credited a few days later, ids like `12346.0`.
  The issue's split of the real retailer (calibration to 2011-09-09, holdout to 2011-12-09) forecasts
  into the ramp.
* `invoicing.csv` (seed 15): 900 wholesale accounts whose export dates every invoice on the first of
  the month (monthly billing), January 2022 to June 2025: each account orders in a month with its
  own beta-distributed chance until it lapses (exponential, mean 30 months); lognormal invoice
  sizes. Between invoicing days no order at all: the store's rhythm, not missing months.
* `drops.csv` (seed 16): 3,000 customers of a brand that sells only on the first four days of each
  month (a monthly drop), October 2022 to September 2025: gamma purchase chances per drop day,
  exponential lifetimes (mean 900 days).
* `winter.csv` (seed 17): 3,000 customers of a shop open only from October to January, October 2022
  to September 2025: gamma purchase chances per open day, exponential lifetimes (mean 900 days).
  Two summer closures a year apart are a closed season (session 53; until then they were named as
  stretches and a cutoff in a closure read eight months of everyone's silence); at its default
  split (2024-04-22) one closure is seen and the next is under way, which is the season again
  (session 54; until then served at +94 %).
* `winter5.csv` (seed 17; `--seed 8` and `9` give seeds 18 and 19): the same shop over five seasons,
  October 2020 to January 2026, 5,000 customers: the closed-season store of benchmarks/MEASUREMENTS.md,
  session 53.
* `ski.csv` (seed 1; `--seed 8` and `9` give seeds 2 and 3): 5,000 customers of a ski shop whose
  season follows the snow, winters 2020-21 to 2025-26: it opens on 1 December ± 10 days and closes
  on 31 March ± 20 days, so its closures start 332 to 399 days apart and last 216 to 266 days
  (seeds 1-3); customers as in the winter store (session 54: until then such a season was a closed one only
  when its closures started within five days of a year apart).

    python -m benchmarks.awkward_stores /tmp/awkward
    clv-platform backtest --dataset /tmp/awkward/onetime.csv --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2022-01-01")


def nochurn(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for c in range(3000):
        first = START + pd.Timedelta(days=int(rng.integers(0, 365)))
        rate = max(rng.gamma(0.8, 1 / 20), 1 / 2000)  # purchases a day
        t = first
        while t < pd.Timestamp("2024-12-31"):
            amount = round(float(rng.lognormal(3.5, 0.6)), 2)
            stamp = (t + pd.Timedelta(hours=int(rng.integers(0, 24)))).strftime("%Y-%m-%dT%H:%M:%S-08:00")
            rows.append((f"{10000 + c}.0", stamp, amount))
            if rng.random() < 0.03:  # a return larger than the order
                later = (t + pd.Timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S-08:00")
                rows.append((f"{10000 + c}.0", later, -round(amount * 1.5, 2)))
            t = t + pd.Timedelta(days=min(2000, max(1, int(rng.exponential(1 / rate)))))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def onetime(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for c in range(5000):
        first = START + pd.Timedelta(days=int(rng.integers(0, 900)))
        rows.append((str(c), first.date().isoformat(), round(float(rng.lognormal(3, 0.8)), 2)))
        if rng.random() < 0.12:
            t = first
            for _ in range(int(rng.integers(1, 6))):
                t = t + pd.Timedelta(days=int(rng.exponential(60)) + 1)
                if t > pd.Timestamp("2024-06-30"):
                    break
                rows.append((str(c), t.date().isoformat(), round(float(rng.lognormal(3, 0.8)), 2)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def subscription(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    start = pd.Timestamp("2023-01-01")
    for c in range(2500):
        t = start + pd.Timedelta(days=int(rng.integers(0, 500)))
        life, first = rng.exponential(400), t
        price = rng.choice([29.0, 49.0, 99.0])
        while t < pd.Timestamp("2024-12-31") and (t - first).days < life:
            rows.append((f"S{c}", t.isoformat(), price if rng.random() > 0.05 else price * 3))
            t = t + pd.Timedelta(days=int(30 + rng.normal(0, 2)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def launch(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    start = pd.Timestamp("2024-03-01")
    for c in range(3000):
        t = start + pd.Timedelta(days=int(rng.integers(0, 10)))
        rate = max(rng.gamma(0.5, 1 / 40), 1 / 3000)
        alive_until = t + pd.Timedelta(days=float(rng.exponential(150)))
        whale = rng.random() < 0.01
        while t < pd.Timestamp("2024-09-30") and t < alive_until:
            amount = float(rng.pareto(1.5) * 30 + 10) * (50 if whale else 1)
            rows.append((c, t.isoformat(), round(amount, 2)))
            t = t + pd.Timedelta(days=min(3000, int(rng.exponential(1 / rate)) + 1))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def gift(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, bool]]:
    """The gift store and who is still a customer at its end (2024-10-31, before the season)."""
    rows, alive = [], {}
    for c in range(3000):
        kind = "gift" if rng.random() < 0.6 else "any"
        first_year = int(rng.integers(2021, 2024))
        if kind == "gift":
            y, live = first_year, True
            while y <= 2024 and live:
                d = pd.Timestamp(f"{y}-12-10") + pd.Timedelta(days=int(rng.integers(-12, 12)))
                if d <= GIFT_END:
                    rows.append((f"G{c}", d.date().isoformat(), round(float(rng.lognormal(4.2, 0.5)), 2)))
                live = rng.random() > 0.2
                y += 1
            alive[f"G{c}"] = live
        else:
            t = pd.Timestamp(f"{first_year}-01-01") + pd.Timedelta(days=int(rng.integers(0, 365)))
            rate, until = max(rng.gamma(0.8, 1 / 60), 1 / 3000), t + pd.Timedelta(days=float(rng.exponential(500)))
            while t <= GIFT_END and t < until:
                rows.append((f"A{c}", t.date().isoformat(), round(float(rng.lognormal(3.8, 0.6)), 2)))
                t = t + pd.Timedelta(days=min(3000, max(1, int(rng.exponential(1 / rate)))))
            alive[f"A{c}"] = until > GIFT_END
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"]), alive


GIFT_END = pd.Timestamp("2024-10-31")


def b2b(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for c in range(150):
        t = pd.Timestamp("2023-01-02") + pd.Timedelta(days=int(rng.integers(0, 400)))
        gap, size = rng.choice([7, 14, 28]), rng.lognormal(7, 1)
        until = t + pd.Timedelta(days=float(rng.exponential(900)))
        while t <= pd.Timestamp("2024-12-31") and t < until:
            amount = round(float(size * rng.lognormal(0, 0.3)), 2)
            rows.append((f"ACME-{c:03d}", t.strftime("%d/%m/%Y"), amount))
            if rng.random() < 0.1:  # a partial credit five days later
                rows.append((f"ACME-{c:03d}", (t + pd.Timedelta(days=5)).strftime("%d/%m/%Y"),
                             -round(amount * rng.uniform(0.2, 1.0), 2)))
            t = t + pd.Timedelta(days=int(max(1, rng.normal(gap, gap * 0.2))))
    return pd.DataFrame(rows, columns=["Customer", "Order Date", "Order Total"])


def lapse(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for c in range(1500):
        t = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 100)))
        for _ in range(int(rng.integers(1, 6))):
            amount = round(float(rng.uniform(10, 200)), 2)
            rows.append((f"L{c}", t.date().isoformat(), amount))
            if rng.random() < 0.3:  # a refund larger than the order, up to 20 days later
                later = t + pd.Timedelta(days=int(rng.integers(1, 20)))
                rows.append((f"L{c}", later.date().isoformat(), -round(amount * float(rng.uniform(1.0, 1.5)), 2)))
            t = t + pd.Timedelta(days=int(rng.integers(10, 120)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


HOLIDAY_MONTHS = np.array([0.75, 0.75, 0.95, 0.85, 0.95, 0.95, 0.95, 0.95, 1.35, 1.5, 1.75, 1.0])
"""Purchase (and arrival) intensity of `holiday()` by calendar month, January first."""


def holiday(rng: np.random.Generator) -> pd.DataFrame:
    start, end = pd.Timestamp("2009-12-01"), pd.Timestamp("2011-12-09")
    span = (end - start).days
    peak = float(HOLIDAY_MONTHS.max())
    # the monthly intensity by day of the span, for thinning (events drawn at the peak rate, kept with s(t) / peak)
    days = pd.date_range(start, end, freq="D")
    intensity = HOLIDAY_MONTHS[days.month.to_numpy() - 1]
    arrival_cdf = np.cumsum(intensity) / intensity.sum()
    rows = []
    for c in range(4000):
        if c < 1000:  # already a customer when the export starts: first seen in its first month
            day = int(rng.integers(0, 31))
        else:
            day = int(np.searchsorted(arrival_cdf, rng.random()))
        rate = max(float(rng.gamma(0.7, 1 / 25)), 1 / 3000)  # purchases a day at intensity 1
        life_end = day + float(rng.exponential(700))
        size = float(rng.lognormal(5.5, 0.9)) * (10 if rng.random() < 0.02 else 1)
        ident = f"{12346 + c}.0"
        t = day
        while t <= span and t < life_end:
            if rng.random() * peak <= intensity[t]:
                amount = round(size * float(rng.lognormal(0, 0.4)), 2)
                rows.append((ident, days[t].date().isoformat(), amount))
                if rng.random() < 0.03:  # a credit note for part of the order a few days later
                    credit_day = min(span, t + int(rng.integers(1, 10)))
                    credit = -round(amount * float(rng.uniform(0.1, 0.6)), 2)
                    rows.append((ident, days[credit_day].date().isoformat(), credit))
            t = t + max(1, int(rng.exponential(1 / (rate * peak))))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def invoicing(rng: np.random.Generator) -> pd.DataFrame:
    months = pd.date_range("2022-01-01", "2025-06-01", freq="MS")
    rows = []
    for c in range(900):
        first = int(rng.integers(0, len(months) - 3))
        chance = float(rng.beta(2, 3))  # of an invoice in a month while an account
        lapse_month = first + float(rng.exponential(30))
        size = float(rng.lognormal(6, 0.8))
        ident = f"A{c:04d}"
        for m in range(first, len(months)):
            if m > lapse_month:
                break
            if m == first or rng.random() < chance:
                rows.append((ident, months[m].date().isoformat(), round(size * float(rng.lognormal(0, 0.3)), 2)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def drops(rng: np.random.Generator, months_open: tuple[int, ...] | None = None, start: str = "2022-10-01",
          end: str = "2025-09-30", customers: int = 3000) -> pd.DataFrame:
    """The drop store; with ``months_open`` a shop open every day of those months instead (winter;
    over 2020-10 to 2026-01 with 5,000 customers, the five-season store of session 53)."""
    days = pd.date_range(start, end, freq="D")
    drop_days = np.flatnonzero(days.day <= 4 if months_open is None else days.month.isin(months_open))
    rows = []
    for c in range(customers):
        first = int(rng.choice(drop_days))
        chance = max(float(rng.gamma(0.8, 1 / 12)), 1e-4)  # of a purchase on a drop day
        life_end = first + float(rng.exponential(900))
        size = float(rng.lognormal(4, 0.6))
        ident = f"D{c:04d}"
        later = drop_days[(drop_days > first) & (drop_days <= life_end)]
        bought = np.concatenate([[first], later[rng.random(later.size) < chance]])
        for day in bought:
            rows.append((ident, days[day].date().isoformat(), round(size * float(rng.lognormal(0, 0.3)), 2)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def ski(rng: np.random.Generator, customers: int = 5000, first_winter: int = 2020,
        last_winter: int = 2025) -> pd.DataFrame:
    """The ski shop: each winter's opening and closing days drawn around 1 December and 31 March,
    customers buying on open days at gamma chances until an exponential lifetime ends."""
    seasons = []
    for year in range(first_winter, last_winter + 1):
        opens = pd.Timestamp(f"{year}-12-01") + pd.Timedelta(days=int(rng.integers(-10, 11)))
        closes = pd.Timestamp(f"{year + 1}-03-31") + pd.Timedelta(days=int(rng.integers(-20, 21)))
        seasons.append(pd.date_range(opens, closes, freq="D"))
    days = seasons[0].append(seasons[1:])
    rows = []
    for c in range(customers):
        first = int(rng.integers(0, len(days)))
        chance = max(float(rng.gamma(0.8, 1 / 12)), 1e-4)  # of a purchase on an open day
        life_end = days[first] + pd.Timedelta(days=float(rng.exponential(900)))
        size = float(rng.lognormal(4, 0.6))
        later = np.flatnonzero((days > days[first]) & (days <= life_end))
        for day in np.concatenate([[first], later[rng.random(later.size) < chance]]):
            rows.append((f"S{c:04d}", days[int(day)].date().isoformat(), round(size * float(rng.lognormal(0, 0.3)), 2)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def write(folder: Path, seed: int = 7) -> dict[str, Path]:
    """Write the files into ``folder``; the same seeds give the same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    stores = {"nochurn": nochurn(rng)}
    stores["onetime"] = onetime(rng)
    days = pd.to_datetime(stores["nochurn"]["order_date"].str[:10])
    stores["short4m"] = stores["nochurn"][days >= "2024-09-01"]
    stores["subscription"] = subscription(np.random.default_rng(seed + 4))
    stores["launch"] = launch(np.random.default_rng(seed + 5))
    stores["gift"], _ = gift(np.random.default_rng(seed - 2))
    stores["b2b"] = b2b(np.random.default_rng(seed + 2))
    stores["lapse"] = lapse(np.random.default_rng(seed + 6))
    stores["holiday"] = holiday(np.random.default_rng(seed + 7))
    stores["invoicing"] = invoicing(np.random.default_rng(seed + 8))
    stores["drops"] = drops(np.random.default_rng(seed + 9))
    stores["winter"] = drops(np.random.default_rng(seed + 10), months_open=(10, 11, 12, 1))
    stores["winter5"] = drops(np.random.default_rng(seed + 10), months_open=(10, 11, 12, 1), start="2020-10-01",
                              end="2026-01-31", customers=5000)
    stores["ski"] = ski(np.random.default_rng(seed - 6))
    paths = {}
    for name, frame in stores.items():
        paths[name] = folder / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for name, path in write(args.folder, args.seed).items():
        print(f"{name}: {path} ({sum(1 for _ in path.open()) - 1:,} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
