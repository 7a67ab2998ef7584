"""A seeded synthetic Shopify + Klaviyo store that behaves like a real one.

Without credentials the platform runs on this store. Customers follow the models the
platform fits, with known parameters, so every model can be checked against the truth:

* purchases follow BG/NBD (Fader, Hardie & Lee 2005) in weeks: each customer buys at
  rate lambda ~ Gamma(r, alpha) and, after every repeat purchase, drops out with
  probability p ~ Beta(a, b); the first purchase is the customer's arrival (time 0);
* order values follow Gamma-Gamma: z ~ Gamma(p, nu) per order, nu ~ Gamma(q, gamma) per customer;
* weekly and yearly seasonality are added by thinning a faster Poisson process, so the
  long-run purchase rate stays lambda and a BG/NBD fit still recovers the parameters.

On top of the clean process sits the mess a real shop has: test orders, cancellations,
partial and full refunds that create later versions of an order, guest checkouts (some
with a registered customer's email in another case or spacing), a second presentment
currency, messy email addresses and a few broken records for staging to reject.

Everything is columnar numpy/pandas. Two renderers share those frames: `order_nodes()` /
`profile_objects()` build the API payloads in Python (what the demo resource serves), and
`write_raw_tables()` renders the same JSON inside DuckDB, fast enough for a benchmark
store of a million customers.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
import json
import tomllib
from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np
import pandas as pd

DAY_S = 86_400
WEEK_S = 7 * DAY_S
_MAX_NS_SECONDS = 9.2e9  # datetime64[ns] ends in 2262 (9.22e9 s after 1970)


def _seconds_to_datetime(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds as datetime64[ns], NaT for NaN and for a dropout centuries away (a tiny dropout
    rate) that datetime64[ns] cannot hold. Integer casts, not pandas' unit conversion: that one
    rounds through a float multiply that has raised a spurious overflow after other tests."""
    ok = np.isfinite(seconds) & (np.abs(np.nan_to_num(seconds)) <= _MAX_NS_SECONDS)
    whole = np.where(ok, np.floor(np.nan_to_num(seconds)), 0).astype(np.int64)
    out = whole.astype("datetime64[s]").astype("datetime64[ns]")
    out[~ok] = np.datetime64("NaT")
    return out
YEAR_S = 365.25 * DAY_S

# Numeric id ranges, shaped like Shopify's 13-digit ids.
ORDER_ID_BASE = 5_600_000_000_000
CUSTOMER_ID_BASE = 7_000_000_000_000
PRODUCT_ID_BASE = 8_000_000_000_000
LINE_ID_BASE = 13_000_000_000_000
REFUND_ID_BASE = 900_000_000_000

DEFAULT_CATEGORIES = (
    "Apparel", "Shoes", "Accessories", "Beauty", "Home",
    "Outdoor", "Kids", "Sports", "Jewelry", "Gifts",
)
# Typical list price (USD) and a few item nouns per category, used to make products.
_CATEGORY_PRICE = {
    "Apparel": 32.0, "Shoes": 75.0, "Accessories": 22.0, "Beauty": 18.0, "Home": 38.0,
    "Outdoor": 48.0, "Kids": 24.0, "Sports": 42.0, "Jewelry": 58.0, "Gifts": 16.0,
}
_CATEGORY_NOUNS = {
    "Apparel": ("Tee", "Hoodie", "Shirt", "Jacket", "Dress"),
    "Shoes": ("Sneaker", "Boot", "Sandal", "Loafer", "Runner"),
    "Accessories": ("Cap", "Belt", "Scarf", "Wallet", "Tote"),
    "Beauty": ("Serum", "Lip Balm", "Face Cream", "Shampoo", "Soap"),
    "Home": ("Mug", "Candle", "Throw", "Vase", "Cushion"),
    "Outdoor": ("Tent", "Backpack", "Bottle", "Lantern", "Chair"),
    "Kids": ("Onesie", "Puzzle", "Plush", "Kids Tee", "Book"),
    "Sports": ("Yoga Mat", "Shorts", "Leggings", "Band", "Towel"),
    "Jewelry": ("Ring", "Necklace", "Bracelet", "Earrings", "Pendant"),
    "Gifts": ("Gift Card", "Card Set", "Gift Box", "Sticker Pack", "Notebook"),
}
_COLORS = ("Black", "White", "Navy", "Olive", "Sand", "Red", "Grey", "Blue", "Rose", "Green")
_FIRST_NAMES = (
    "Ana", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Isla", "Jonas",
    "Kai", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Will", "Xena", "Yusuf", "Zoe", "Liam", "Mia", "Noah", "Olga",
)
_LAST_NAMES = (
    "Lopez", "Smith", "Nguyen", "Garcia", "Muller", "Rossi", "Khan", "Silva", "Brown", "Kim",
    "Novak", "Dubois", "Jensen", "Costa", "Ito", "Walker", "Martin", "Haddad", "Olsen", "Reyes",
)
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "inbox.example.org")


def _load_locations() -> tuple[tuple, ...]:
    """The (city, country, region, zip, timezone, weight) rows of demo_locations.toml."""
    table = tomllib.loads(resources.files("clv_platform.ingestion").joinpath("demo_locations.toml")
                          .read_text(encoding="utf-8"))
    if table["columns"] != ["city", "country", "region", "zip", "timezone", "weight"]:
        raise ValueError(f"demo_locations.toml: unexpected columns {table['columns']}")
    return tuple(tuple(row) for row in table["rows"])


_LOCATIONS = _load_locations()
_CROCKFORD = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)
_CONSENTS = ("SUBSCRIBED", "UNSUBSCRIBED", "NEVER_SUBSCRIBED")
_FIN_STATUS = ("PAID", "AUTHORIZED", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED")
_FULFILLMENT = ("FULFILLED", "UNFULFILLED")
_AFFINITIES = (
    ("email", "sms", "push"), ("email", "push", "sms"), ("sms", "email", "push"),
    ("sms", "push", "email"), ("push", "email", "sms"), ("push", "sms", "email"),
)
# Order fates: what happens to an order after it is placed.
_FATE_NONE, _FATE_VOID, _FATE_CANCEL_REFUND, _FATE_FULL_REFUND, _FATE_PARTIAL_REFUND = range(5)
# Version kinds, in the order they happen.
_V_CREATED, _V_EDIT, _V_MONEY = range(3)
# Broken-record kinds.
_BROKEN_NONE, _BROKEN_AMOUNT, _BROKEN_NO_ID = range(3)


@dataclass(frozen=True)
class DemoStoreParams:
    """Size, seed, true model parameters and mess rates of the synthetic store.

    Times are in weeks (the unit of `alpha`). Rates are probabilities per order unless
    named otherwise.
    """

    n_customers: int = 5000
    seed: int = 42
    start_date: date = date(2024, 11, 1)
    end_date: date = date(2026, 10, 31)
    shop_currency: str = "USD"
    # west of UTC, as many Shopify stores are: an evening order is the next day in UTC
    shop_timezone: str = "America/Los_Angeles"
    tax_rate_percent: int = 8  # sales tax on the order subtotal (prices exclude tax)
    shipping_cents: int = 595  # flat shipping below the free-shipping threshold
    free_shipping_cents: int = 7500
    second_currency: str = "EUR"
    second_currency_rate: float = 0.92  # units of second currency per shop-currency unit
    # BG/NBD truth (weeks)
    r: float = 0.8
    alpha: float = 6.0
    a: float = 0.9
    b: float = 3.5
    # Gamma-Gamma truth (shop currency); mean order = p * gamma / (q - 1)
    gg_p: float = 4.0
    gg_q: float = 3.5
    gg_gamma: float = 30.0
    # seasonality amplitudes of the purchase intensity (relative)
    weekly_amplitude: float = 0.10
    yearly_amplitude: float = 0.15
    # catalogue
    n_products: int = 300
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    preferred_category_share: float = 0.6  # chance a line comes from the customer's preferred category
    max_lines: int = 6
    # mess
    test_order_rate: float = 0.005
    cancel_rate: float = 0.03
    partial_refund_rate: float = 0.06
    full_refund_rate: float = 0.02
    edit_rate: float = 0.05
    discount_rate: float = 0.15
    guest_order_rate: float = 0.07
    guest_known_email_share: float = 0.4  # share of guest orders placed by a registered customer's email
    second_currency_order_rate: float = 0.08
    messy_email_rate: float = 0.2
    broken_record_rate: float = 0.001  # per order version
    # Klaviyo
    klaviyo_buyer_rate: float = 0.85
    klaviyo_extra_profile_rate: float = 0.2  # profiles that never bought, relative to n_customers
    predictive_rate: float = 0.6  # share of buyers whose profile carries predictive_analytics
    predictive_null_rate: float = 0.1  # share of those whose predictions are blank
    staff_accounts: int = 3

    @property
    def true_params(self) -> dict:
        """The BG/NBD and Gamma-Gamma parameters the store is generated from (what a fit should recover)."""
        return {
            "bgnbd": {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b},
            "gamma_gamma": {"p": self.gg_p, "q": self.gg_q, "v": self.gg_gamma},
        }


def _epoch(d: date | datetime) -> float:
    """Seconds since the epoch; naive datetimes and dates are taken as UTC."""
    if isinstance(d, datetime):
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        return d.timestamp()
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()


def _iso(seconds: np.ndarray, suffix: str) -> list[str | None]:
    """ISO 8601 strings for epoch seconds (negative = missing), vectorized."""
    seconds = np.asarray(seconds, dtype=np.int64)
    text = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    out = np.char.add(text.astype(str), suffix).tolist()
    return [None if s < 0 else t for s, t in zip(seconds.tolist(), out)]


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _shop_money(cents: int, currency: str) -> dict:
    return {"shopMoney": {"amount": _money(cents), "currencyCode": currency}}


def _messy(emails: pd.Series, kinds: np.ndarray) -> pd.Series:
    """Spell lower-case emails the way people type them; every kind differs from the input
    and from every other kind, so a variant never equals the clean form by accident."""
    out = emails.copy()
    upper, padded, trailing, titled = (kinds == k for k in range(4))
    out[upper] = emails[upper].str.upper()
    out[padded] = " " + emails[padded].str.capitalize()
    out[trailing] = emails[trailing] + "  "
    out[titled] = emails[titled].str.title()
    return out


def _ulids(rng: np.random.Generator, millis: np.ndarray) -> np.ndarray:
    """26-char Crockford base32 ids: 48-bit time prefix + 80 random bits, like Klaviyo's."""
    n = len(millis)
    digits = np.empty((n, 26), dtype=np.uint8)
    t = np.asarray(millis, dtype=np.int64).copy()
    for i in range(9, -1, -1):
        digits[:, i] = t & 31
        t >>= 5
    digits[:, 10:] = rng.integers(0, 32, size=(n, 16), dtype=np.uint8)
    chars = _CROCKFORD[digits]
    return chars.view("S26").ravel().astype(str)


def _season(abs_s: np.ndarray, params: DemoStoreParams) -> np.ndarray:
    """Relative purchase intensity: weekly peak on Sunday evening, yearly peak at Black Friday."""
    weekly_peak = 3 * DAY_S + 20 * 3600  # the epoch is a Thursday 00:00
    yearly_peak = _epoch(date(2025, 11, 28))
    w = 1.0 + params.weekly_amplitude * np.cos(2 * np.pi * (abs_s - weekly_peak) / WEEK_S)
    y = 1.0 + params.yearly_amplitude * np.cos(2 * np.pi * (abs_s - yearly_peak) / YEAR_S)
    return w * y


def _simulate_purchases(
    params: DemoStoreParams, rng: np.random.Generator, arrival_s: np.ndarray, lam: np.ndarray, p_drop: np.ndarray,
    end_s: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD purchase times for all customers at once.

    Each step draws the next candidate for every still-active customer from a Poisson
    process at the peak rate lambda * s_max and keeps it with probability s(t)/s_max
    (thinning), so the kept purchases form a process of intensity lambda * s(t). Only kept
    purchases can trigger a dropout. The loop runs over purchase index, not customers.
    """
    n = len(arrival_s)
    s_max = (1 + params.weekly_amplitude) * (1 + params.yearly_amplitude)
    horizon = (end_s - arrival_s) / WEEK_S
    peak_rate = np.maximum(lam, 1e-12) * s_max
    t = np.zeros(n)
    dropout_w = np.full(n, np.nan)
    buyers = [np.arange(n)]
    times = [arrival_s.copy()]
    active = np.arange(n)
    while active.size:
        t_a = t[active] + rng.exponential(1.0, active.size) / peak_rate[active]
        inside = t_a < horizon[active]
        active, t_a = active[inside], t_a[inside]
        t[active] = t_a
        abs_s = arrival_s[active] + t_a * WEEK_S
        keep = rng.random(active.size) * s_max < _season(abs_s, params)
        bought, bought_t = active[keep], t_a[keep]
        buyers.append(bought)
        times.append(abs_s[keep])
        drop = rng.random(bought.size) < p_drop[bought]
        dropout_w[bought[drop]] = bought_t[drop]
        still = np.ones(n, dtype=bool)
        still[bought[drop]] = False
        active = active[still[active]]
    return np.concatenate(buyers), np.floor(np.concatenate(times)).astype(np.int64), dropout_w


class DemoStore:
    """The generated store: columnar frames plus the two payload renderers.

    Frames (all times are int64 epoch seconds, money int64 cents in the shop currency;
    -1 marks a missing time or reference):
    `products`, `accounts` (Shopify customer records), `orders`, `order_versions`
    (sorted by updated_s, order_idx), `lines` (sorted by order_idx, line_number),
    `profiles` (sorted by updated_s), and the ground truth: `truth_customers` (one row per
    simulated shopper: arrival, lambda, p_drop, nu, dropout_time, is_alive_at_end, ...) and
    `truth_transactions` (customer, order_num = numeric part of the order gid, timestamp,
    value in shop currency), which excludes test orders and ignores cancellations and
    refunds: it is the clean BG/NBD + Gamma-Gamma process.
    """

    def __init__(
        self, params: DemoStoreParams, products: pd.DataFrame, accounts: pd.DataFrame, orders: pd.DataFrame,
        order_versions: pd.DataFrame, lines: pd.DataFrame, profiles: pd.DataFrame,
        truth_customers: pd.DataFrame, truth_transactions: pd.DataFrame,
    ) -> None:
        self.params = params
        self.products = products
        self.accounts = accounts
        self.orders = orders
        self.order_versions = order_versions
        self.lines = lines
        self.profiles = profiles
        self.truth_customers = truth_customers
        self.truth_transactions = truth_transactions
        self._line_start = np.searchsorted(lines["order_idx"].to_numpy(), np.arange(len(orders) + 1))
        self._product_info = list(zip(
            products["sku"].tolist(), products["title"].tolist(), products["product_num"].tolist(),
            products["category"].tolist(),
        ))

    @property
    def true_params(self) -> dict:
        return self.params.true_params

    # ----------------------------------------------------------------- Shopify orders
    def order_nodes(self, updated_min: datetime | None = None, updated_max: datetime | None = None) -> Iterator[dict]:
        """GraphQL order nodes, one per order version with updatedAt in [updated_min, updated_max)."""
        upd = self.order_versions["updated_s"].to_numpy()
        lo = 0 if updated_min is None else int(np.searchsorted(upd, np.ceil(_epoch(updated_min)), "left"))
        hi = len(upd) if updated_max is None else int(np.searchsorted(upd, np.ceil(_epoch(updated_max)), "left"))
        step = 20_000
        for start in range(lo, hi, step):
            yield from self._order_chunk(start, min(start + step, hi))

    def _order_chunk(self, start: int, stop: int) -> Iterator[dict]:
        cur = self.params.shop_currency
        v = self.order_versions.iloc[start:stop]
        o = self.orders.iloc[v["order_idx"].to_numpy()]
        acc = self.accounts
        acc_num = acc["account_num"].tolist()
        acc_email = acc["email"].tolist()
        updated = _iso(v["updated_s"].to_numpy(), "Z")
        created = _iso(o["created_s"].to_numpy(), "Z")
        cancelled = _iso(np.where(v["cancelled"].to_numpy(), o["cancel_s"].to_numpy(), -1), "Z")
        refunded_at = _iso(o["refund_s"].to_numpy(), "Z")
        cols = {name: o[name].tolist() for name in (
            "order_idx", "order_num", "currency_code", "is_test", "account_idx", "guest_email",
            "discount_cents", "refund_num", "refund_cents", "refund_scope", "refund_ship_cents",
        )}
        vcols = {name: v[name].tolist() for name in (
            "fin_status", "fulfillment_status", "current_cents", "has_refund", "broken", "sub_cents", "tax_cents",
            "ship_cents", "total_cents", "presentment_cents", "post_edit",
        )}
        combo_of, combos = assign_journeys(self)
        for i in range(len(v)):
            order_idx = cols["order_idx"][i]
            account = cols["account_idx"][i]
            email = acc_email[account] if account >= 0 else cols["guest_email"][i]
            total = _money(vcols["total_cents"][i])
            broken = vcols["broken"][i]
            refund_scope = cols["refund_scope"][i] if vcols["has_refund"][i] else 0
            lines = self._line_nodes(order_idx, vcols["post_edit"][i], refund_scope)
            node = {
                "id": f"gid://shopify/Order/{cols['order_num'][i]}",
                "name": f"#{1001 + order_idx}",
                "createdAt": created[i],
                "processedAt": created[i],
                "updatedAt": updated[i],
                "cancelledAt": cancelled[i],
                "currencyCode": cur,
                "presentmentCurrencyCode": cols["currency_code"][i],
                "test": cols["is_test"][i],
                "email": email,
                "displayFinancialStatus": _FIN_STATUS[vcols["fin_status"][i]],
                "displayFulfillmentStatus": _FULFILLMENT[vcols["fulfillment_status"][i]],
                "taxesIncluded": False,
                "totalPriceSet": {
                    "shopMoney": {
                        "amount": total.replace(".", ",") if broken == _BROKEN_AMOUNT else total,
                        "currencyCode": cur,
                    },
                    "presentmentMoney": {
                        "amount": _money(vcols["presentment_cents"][i]), "currencyCode": cols["currency_code"][i],
                    },
                },
                "subtotalPriceSet": _shop_money(vcols["sub_cents"][i], cur),
                "currentTotalPriceSet": _shop_money(vcols["current_cents"][i], cur),
                "totalDiscountsSet": _shop_money(cols["discount_cents"][i], cur),
                "totalTaxSet": _shop_money(vcols["tax_cents"][i], cur),
                "totalShippingPriceSet": _shop_money(vcols["ship_cents"][i], cur),
                "customer": None if account < 0 else {
                    "id": f"gid://shopify/Customer/{acc_num[account]}", "defaultEmailAddress": {"emailAddress": email},
                },
                "lineItems": {"nodes": lines},
                "refunds": [{
                    "id": f"gid://shopify/Refund/{cols['refund_num'][i]}",
                    "createdAt": refunded_at[i],
                    "totalRefundedSet": _shop_money(cols["refund_cents"][i], cur),
                    "refundLineItems": {"nodes": self._refund_lines(order_idx, refund_scope)},
                    "refundShippingLines": {"nodes": [{
                        "subtotalAmountSet": _shop_money(cols["refund_ship_cents"][i], cur),
                        "taxAmountSet": _shop_money(0, cur),
                    }] if cols["refund_ship_cents"][i] else []},
                }] if refund_scope else [],
            }
            node.update(combos[combo_of[order_idx]])
            if broken == _BROKEN_NO_ID:
                del node["id"]
            yield node

    def _line_nodes(self, order_idx: int, post_edit: bool, refund_scope: int) -> list[dict]:
        """Line items of one order version: `quantity` as ordered, `currentQuantity` after the edit
        (one unit of a removal-edited line gone) and after the refund (1 = last line, 2 = all)."""
        cur = self.params.shop_currency
        lo, hi = self._line_start[order_idx], self._line_start[order_idx + 1]
        cols = self._line_columns()
        nodes = []
        for k, (line_num, qty, product, unit, disc, extra) in enumerate(zip(*(c[lo:hi].tolist() for c in cols))):
            sku, title, product_num, category = self._product_info[product]
            current = qty + (0 if post_edit else extra)
            if refund_scope == 2 or (refund_scope == 1 and k == hi - lo - 1):
                current -= qty if refund_scope == 2 else 1
            nodes.append({
                "id": f"gid://shopify/LineItem/{line_num}",
                "quantity": qty + extra,
                "currentQuantity": current,
                "sku": sku,
                "title": title,
                "isGiftCard": False,  # the catalogue's "Gift Card" items are ordinary products
                "product": {"id": f"gid://shopify/Product/{product_num}", "productType": category},
                "originalUnitPriceSet": _shop_money(unit, cur),
                "totalDiscountSet": _shop_money(disc, cur),
            })
        return nodes

    def _refund_lines(self, order_idx: int, refund_scope: int) -> list[dict]:
        """The refunded lines: the last line (quantity 1) for a partial refund, every line for a full
        one, none for a refund of the shipping only (scope 3)."""
        cur = self.params.shop_currency
        lo, hi = self._line_start[order_idx], self._line_start[order_idx + 1]
        cols = self._line_columns()
        rows = list(zip(*(c[lo:hi].tolist() for c in cols)))
        if refund_scope == 1:
            rows = rows[-1:]
        elif refund_scope == 3:
            rows = []
        return [{
            "lineItem": {"id": f"gid://shopify/LineItem/{line_num}", "isGiftCard": False},
            "quantity": qty,
            "subtotalSet": _shop_money(qty * unit - disc, cur),
        } for line_num, qty, _, unit, disc, _ in rows]

    def _line_columns(self) -> tuple[np.ndarray, ...]:
        if not hasattr(self, "_line_cols"):
            self._line_cols = tuple(
                self.lines[c].to_numpy()
                for c in ("line_num", "quantity", "product_idx", "unit_cents", "discount_cents", "extra")
            )
        return self._line_cols

    # --------------------------------------------------------------- Klaviyo profiles
    def profile_objects(self, updated_after: datetime | None = None) -> Iterator[dict]:
        """JSON:API profile objects with attributes.updated > updated_after, sorted by updated."""
        upd = self.profiles["updated_s"].to_numpy()
        lo = 0 if updated_after is None else int(np.searchsorted(upd, np.floor(_epoch(updated_after)), "right"))
        step = 20_000
        for start in range(lo, len(upd), step):
            yield from self._profile_chunk(start, min(start + step, len(upd)))

    def _profile_chunk(self, start: int, stop: int) -> Iterator[dict]:
        pr = self.profiles.iloc[start:stop]
        suffix = "+00:00"
        created = _iso(pr["created_s"].to_numpy(), suffix)
        updated = _iso(pr["updated_s"].to_numpy(), suffix)
        last_event = _iso(pr["last_event_s"].to_numpy(), suffix)
        consent_ts = _iso(pr["consent_s"].to_numpy(), suffix)
        next_order = _iso(pr["pa_next_order_s"].to_numpy(), suffix)
        text = {name: pr[name].tolist() for name in (
            "profile_id", "email", "phone_number", "external_id", "first_name", "last_name",
            "location_idx", "consent", "has_pa", "pa_affinity",
        )}
        pa_floats = {name: [None if x != x else x for x in pr[f"pa_{name}"].tolist()] for name in _PA_FLOATS}
        for i in range(len(pr)):
            loc = _LOCATIONS[text["location_idx"][i]]
            consent = _CONSENTS[text["consent"][i]]
            attributes = {
                "email": text["email"][i],
                "phone_number": text["phone_number"][i],
                "external_id": text["external_id"][i],
                "first_name": text["first_name"][i],
                "last_name": text["last_name"][i],
                "organization": None,
                "location": {"city": loc[0], "country": loc[1], "region": loc[2], "zip": loc[3], "timezone": loc[4]},
                "created": created[i],
                "updated": updated[i],
                "last_event_date": last_event[i],
                "properties": {},
                "subscriptions": {"email": {"marketing": {
                    "can_receive_email_marketing": consent == "SUBSCRIBED",
                    "consent": consent,
                    "consent_timestamp": consent_ts[i],
                }}},
            }
            if text["has_pa"][i]:
                attributes["predictive_analytics"] = {
                    **{name: pa_floats[name][i] for name in _PA_FLOATS[:5]},
                    "average_days_between_orders": pa_floats["average_days_between_orders"][i],
                    "average_order_value": pa_floats["average_order_value"][i],
                    "churn_probability": pa_floats["churn_probability"][i],
                    "expected_date_of_next_order": next_order[i],
                    "ranked_channel_affinity": list(_AFFINITIES[text["pa_affinity"][i]]),
                }
            pid = text["profile_id"][i]
            yield {
                "type": "profile",
                "id": pid,
                "attributes": attributes,
                "links": {"self": f"https://a.klaviyo.com/api/profiles/{pid}/"},
            }

    # ------------------------------------------------------------------ fast SQL path
    def write_raw_tables(self, conn, ingested_at: datetime) -> dict[str, int]:
        """Write every order version and profile into raw.shopify_orders / raw.klaviyo_profiles.

        The JSON is rendered by DuckDB from the columnar frames (no Python loop over
        records), so a million-customer store loads in minutes. The payloads equal what
        `order_nodes()` / `profile_objects()` yield. Existing tables are replaced.
        """
        return _write_raw_tables(self, conn, ingested_at)


_PA_FLOATS = (
    "historic_clv", "predicted_clv", "total_clv", "historic_number_of_orders", "predicted_number_of_orders",
    "average_days_between_orders", "average_order_value", "churn_probability",
)


def generate(params: DemoStoreParams = DemoStoreParams()) -> DemoStore:
    """Build the whole store from `params`; the same params always give the same store.

    Each concern draws from its own child random stream, so changing one rate does not
    reshuffle everything else (e.g. raising the refund rate keeps the purchase history).
    """
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(params.seed).spawn(9)]
    rng_cat, rng_cust, rng_sim, rng_val, rng_line, rng_mess, rng_mail, rng_prof, rng_ids = streams
    start_s = _epoch(params.start_date)
    end_s = _epoch(params.end_date) + DAY_S  # the end date is included

    products, cat_weights = _make_products(params, rng_cat)
    n = params.n_customers
    n_cat = len(params.categories)

    arrival_s = np.sort(start_s + rng_cust.random(n) * (end_s - start_s))
    lam = rng_cust.gamma(params.r, 1.0 / params.alpha, n)
    p_drop = rng_cust.beta(params.a, params.b, n)
    nu = rng_cust.gamma(params.gg_q, 1.0 / params.gg_gamma, n)
    preferred = rng_cust.choice(n_cat, n, p=cat_weights)
    guest_only = rng_cust.random(n) < params.guest_order_rate * (1 - params.guest_known_email_share)

    buyer, buy_s, dropout_w = _simulate_purchases(params, rng_sim, arrival_s, lam, p_drop, end_s)
    value = rng_val.gamma(params.gg_p, 1.0 / nu[buyer])
    n_real = len(buyer)
    n_test = int(rng_val.binomial(n_real, params.test_order_rate / (1 - params.test_order_rate)))
    test_s = np.floor(start_s + rng_val.random(n_test) * (end_s - start_s)).astype(np.int64)
    test_value = rng_val.gamma(params.gg_p, params.gg_gamma / (params.gg_q - 1) / params.gg_p, n_test)

    individual = np.concatenate([buyer, np.full(n_test, -1)])
    created_s = np.concatenate([buy_s, test_s])
    order_value = np.concatenate([value, test_value])
    order_sort = np.lexsort((individual, created_s))
    individual, created_s, order_value = individual[order_sort], created_s[order_sort], order_value[order_sort]
    is_test = individual < 0
    n_orders = len(individual)
    gross = np.maximum(np.round(order_value * 100), 100).astype(np.int64)

    # people: the n buyers, then the Klaviyo-only profiles
    n_extra = int(round(n * params.klaviyo_extra_profile_rate))
    first_name, last_name, email = _people(rng_mail, n + n_extra)
    display_kind = np.where(rng_mail.random(n) < params.messy_email_rate, rng_mail.integers(0, 4, n), -1)
    buyer_email = pd.Series(email[:n])
    display_email = _messy(buyer_email, display_kind)

    registered = ~guest_only
    account_of = np.where(registered, np.cumsum(registered) - 1, -1)
    n_registered = int(registered.sum())
    staff_email = [f"qa+{k + 1}@store.example.com" for k in range(params.staff_accounts)]
    accounts = pd.DataFrame({
        "account_idx": np.arange(n_registered + params.staff_accounts),
        "account_num": CUSTOMER_ID_BASE + 1 + np.arange(n_registered + params.staff_accounts),
        "email": display_email[registered].tolist() + staff_email,
        "individual": np.concatenate([np.flatnonzero(registered), np.full(params.staff_accounts, -1)]),
    })

    # guest checkouts: guest-only shoppers always, registered shoppers sometimes
    ind = np.maximum(individual, 0)
    known_share = params.guest_order_rate * params.guest_known_email_share
    p_guest_checkout = known_share / max(1e-9, 1 - params.guest_order_rate * (1 - params.guest_known_email_share))
    guest = ~is_test & (guest_only[ind] | (rng_mess.random(n_orders) < p_guest_checkout))
    staff = n_registered + rng_mess.integers(0, params.staff_accounts, n_orders)
    account_idx = np.where(is_test, staff, np.where(guest, -1, account_of[ind]))
    guest_rows = np.flatnonzero(guest)
    g_ind = individual[guest_rows]
    g_display = display_kind[g_ind]
    shift = rng_mess.integers(1, 4, len(guest_rows))
    g_kind = np.where(
        guest_only[g_ind],
        np.where(rng_mess.random(len(guest_rows)) < params.messy_email_rate, shift % 4, -1),
        np.where(g_display < 0, shift - 1, (g_display + shift) % 4),
    )
    guest_email = np.full(n_orders, None, dtype=object)
    guest_email[guest_rows] = _messy(pd.Series(email[g_ind]), g_kind).to_numpy()

    second = rng_mess.random(n_orders) < params.second_currency_order_rate
    fx = params.second_currency_rate * (1 + 0.03 * np.sin(2 * np.pi * created_s / YEAR_S))
    presentment = np.where(second, np.round(gross * fx), gross).astype(np.int64)
    currency_code = np.where(second, params.second_currency, params.shop_currency).astype(object)
    discount_frac = np.where(
        rng_mess.random(n_orders) < params.discount_rate, rng_mess.choice([0.10, 0.15, 0.20, 0.25], n_orders), 0.0
    )
    list_total = np.ceil(gross / (1 - discount_frac)).astype(np.int64)
    discount = list_total - gross

    order_pref = np.where(is_test, rng_line.integers(0, n_cat, n_orders), preferred[ind])
    lines = _make_lines(
        params, rng_line, products, cat_weights, order_value, order_pref, gross, list_total, discount_frac
    )

    orders, versions = _order_histories(params, rng_mess, created_s, gross, end_s)
    orders = orders.assign(
        order_num=ORDER_ID_BASE + 1 + np.arange(n_orders),
        created_s=created_s,
        currency_code=currency_code,
        is_test=is_test,
        account_idx=account_idx,
        guest_email=guest_email,
        individual=individual,
        gross_cents=gross,
        presentment_cents=presentment,
        discount_cents=discount,
    )

    orders, versions, lines = _money_columns(params, orders, versions, lines, fx, second)

    truth_tx = pd.DataFrame({
        "customer": individual[~is_test],
        "order_num": orders["order_num"].to_numpy()[~is_test],
        "timestamp": created_s[~is_test].astype("datetime64[s]"),
        "value": gross[~is_test] / 100.0,
    })
    profiles, profile_of = _make_profiles(
        params, rng_prof, rng_ids, first_name, last_name, email, individual[~is_test], created_s[~is_test],
        gross[~is_test], arrival_s, lam, p_drop, nu, dropout_w, accounts, account_of, start_s, end_s,
    )
    dropout_abs = arrival_s + dropout_w * WEEK_S
    truth_customers = pd.DataFrame({
        "customer": np.arange(n),
        "email": email[:n],
        "shopify_customer_id": [
            f"gid://shopify/Customer/{CUSTOMER_ID_BASE + 1 + a}" if a >= 0 else None for a in account_of.tolist()
        ],
        "klaviyo_profile_id": profile_of,
        "guest_only": guest_only,
        "arrival": np.floor(arrival_s).astype(np.int64).astype("datetime64[s]"),
        "lambda": lam,
        "p_drop": p_drop,
        "nu": nu,
        "dropout_time": _seconds_to_datetime(dropout_abs),
        "is_alive_at_end": np.isnan(dropout_w),
        "n_purchases": np.bincount(individual[~is_test], minlength=n),
        "preferred_category": np.asarray(params.categories, dtype=object)[preferred],
    })
    return DemoStore(params, products, accounts, orders, versions, lines, profiles, truth_customers, truth_tx)


def _tax(params: DemoStoreParams, cents: np.ndarray) -> np.ndarray:
    """Sales tax in cents, rounded half up (integer arithmetic, so both renderers agree)."""
    return (cents * params.tax_rate_percent + 50) // 100


def _money_columns(
    params: DemoStoreParams, orders: pd.DataFrame, versions: pd.DataFrame, lines: pd.DataFrame,
    fx: np.ndarray, second: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What Shopify reports per order version, with its real field meanings.

    `gross_cents` (the Gamma-Gamma order value) is the subtotal: the lines after discounts,
    before returns, without tax and shipping, i.e. Shopify's net sales before returns. On top:
    - tax and shipping, inside totalPriceSet (and in the presentment amount);
    - order edits that removed a unit: an edited order without discount was placed with one more
      unit of its first line, removed by the edit (quantity stays as ordered, currentQuantity
      drops, and the totals of the versions before the edit include the unit);
    - refunds with their refunded lines: a partial refund returns the last line (quantity 1)
      with its tax; a full refund returns every line and refunds the whole total, its shipping as a
      refunded shipping line (refundShippingLines; shipping is not taxed here);
    - every fourth partial refund (by order) of an order that paid shipping refunds the shipping
      only ("we refunded your shipping"): a refunded shipping line and no refunded lines.
    """
    n = len(orders)
    line_order = lines["order_idx"].to_numpy()
    start = np.searchsorted(line_order, np.arange(n + 1))
    first, last = start[:-1], start[1:] - 1
    unit = lines["unit_cents"].to_numpy()
    disc = lines["discount_cents"].to_numpy()
    gross = orders["gross_cents"].to_numpy()
    fate = orders["fate"].to_numpy()

    removal = orders["edited"].to_numpy() & (orders["discount_cents"].to_numpy() == 0)
    extra = np.zeros(len(lines), dtype=np.int16)
    extra[first[removal]] = 1
    lines = lines.assign(extra=extra)

    partial = fate == _FATE_PARTIAL_REFUND
    full = (fate == _FATE_FULL_REFUND) | (fate == _FATE_CANCEL_REFUND)
    last_value = unit[last] - disc[last]  # the last line has quantity 1
    ship_after = np.where(gross >= params.free_shipping_cents, 0, params.shipping_cents)
    shipping_only = partial & (ship_after > 0) & (np.arange(n) % 4 == 0)
    partial &= ~shipping_only
    products = np.where(partial, last_value, np.where(full, gross, 0))
    total_after = gross + _tax(params, gross) + ship_after
    refund_total = np.where(partial, last_value + _tax(params, last_value),
                            np.where(full, total_after, np.where(shipping_only, ship_after, 0)))
    orders = orders.assign(
        refund_cents=refund_total, refund_products_cents=products, removal_edit=removal,
        refund_ship_cents=np.where(full | shipping_only, ship_after, 0),
        refund_scope=np.where(partial, 1, np.where(full, 2, np.where(shipping_only, 3, 0))).astype(np.int8),
    )

    v_order = versions["order_idx"].to_numpy()
    pre_edit = removal[v_order] & (versions["kind"].to_numpy() == _V_CREATED)
    sub = gross[v_order] + np.where(pre_edit, unit[first[v_order]], 0)
    tax = _tax(params, sub)
    ship = np.where(sub >= params.free_shipping_cents, 0, params.shipping_cents)
    total = sub + tax + ship
    presentment = np.where(second[v_order], np.round(total * fx[v_order]), total).astype(np.int64)
    is_money = versions["kind"].to_numpy() == _V_MONEY
    v_fate = fate[v_order]
    current = np.where(
        is_money,
        np.where(v_fate == _FATE_PARTIAL_REFUND, total - refund_total[v_order], 0),
        total,
    )
    versions = versions.assign(
        sub_cents=sub, tax_cents=tax, ship_cents=ship, total_cents=total, presentment_cents=presentment,
        current_cents=current, post_edit=removal[v_order] & ~pre_edit,
    )
    return orders, versions, lines


def _make_products(params: DemoStoreParams, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """The catalogue, grouped by category so a category's products are one index range."""
    n_cat = len(params.categories)
    counts = np.full(n_cat, params.n_products // n_cat)
    counts[: params.n_products % n_cat] += 1
    cat_idx = np.repeat(np.arange(n_cat), counts)
    base = np.array([_CATEGORY_PRICE.get(c, 30.0) for c in params.categories])[cat_idx]
    list_cents = np.maximum(np.round(base * rng.lognormal(0.0, 0.35, len(cat_idx))) * 100 - 1, 499).astype(np.int64)
    styles = ("Classic", "Essential", "Everyday", "Signature", "Studio", "Trail")
    colors = rng.integers(0, len(_COLORS), len(cat_idx))
    style = rng.integers(0, len(styles), len(cat_idx))
    noun_pick = rng.integers(0, 5, len(cat_idx))
    titles, skus = [], []
    for k, (c, col, sty, nk) in enumerate(zip(cat_idx.tolist(), colors.tolist(), style.tolist(), noun_pick.tolist())):
        name = params.categories[c]
        nouns = _CATEGORY_NOUNS.get(name, ("Item",))
        titles.append(f"{styles[sty]} {_COLORS[col]} {nouns[nk % len(nouns)]}")
        skus.append(f"{name[:3].upper()}-{k + 1:04d}")
    products = pd.DataFrame({
        "product_idx": np.arange(len(cat_idx)),
        "product_num": PRODUCT_ID_BASE + 1 + np.arange(len(cat_idx)),
        "sku": skus,
        "title": titles,
        "category_idx": cat_idx,
        "category": [params.categories[c] for c in cat_idx.tolist()],
        "list_cents": list_cents,
    })
    weights = rng.dirichlet(np.full(n_cat, 5.0))
    return products, weights


def _people(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Names and unique lower-case emails (the index makes every address distinct)."""
    first = np.asarray(_FIRST_NAMES, dtype=object)[rng.integers(0, len(_FIRST_NAMES), n)]
    last = np.asarray(_LAST_NAMES, dtype=object)[rng.integers(0, len(_LAST_NAMES), n)]
    domain = np.asarray(_EMAIL_DOMAINS, dtype=object)[rng.integers(0, len(_EMAIL_DOMAINS), n)]
    number = pd.Series(np.arange(1, n + 1)).astype(str).to_numpy(dtype=object)
    email = pd.Series(first + "." + last + number + "@" + domain).str.lower().to_numpy(dtype=object)
    return first, last, email


def _make_lines(
    params: DemoStoreParams, rng: np.random.Generator, products: pd.DataFrame, cat_weights: np.ndarray,
    order_value: np.ndarray, order_pref: np.ndarray, gross: np.ndarray, list_total: np.ndarray,
    discount_frac: np.ndarray,
) -> pd.DataFrame:
    """Line items whose quantity x unit price - discount adds up exactly to the order total.

    Unit prices are the products' list prices scaled to the order's pre-discount total
    (rounded down; the last line, quantity 1, takes the remainder), and the discount is
    spread in proportion with the rounding remainder on the largest line. So the
    Gamma-Gamma order value is exactly the order's totalPrice.
    """
    n_orders = len(order_value)
    n_lines = np.clip(1 + rng.poisson(order_value / 35.0), 1, params.max_lines)
    order = np.repeat(np.arange(n_orders), n_lines)
    start = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
    line_number = np.arange(len(order)) - start[order]
    last = line_number == n_lines[order] - 1

    cat_idx = products["category_idx"].to_numpy()
    n_cat = len(params.categories)
    cat_start = np.searchsorted(cat_idx, np.arange(n_cat))
    cat_size = np.bincount(cat_idx, minlength=n_cat)
    own = rng.random(len(order)) < params.preferred_category_share
    cat = np.where(own, order_pref[order], rng.choice(n_cat, len(order), p=cat_weights))
    product = cat_start[cat] + (rng.random(len(order)) * cat_size[cat]).astype(np.int64)
    qty = np.where(last, 1, rng.choice([1, 2, 3], len(order), p=[0.8, 0.15, 0.05])).astype(np.int64)
    list_price = products["list_cents"].to_numpy()[product]

    subtotal = np.bincount(order, weights=qty * list_price, minlength=n_orders)
    scale = list_total / subtotal
    unit = np.where(last, 0, np.floor(list_price * scale[order])).astype(np.int64)
    rest = list_total - np.bincount(order, weights=qty * unit, minlength=n_orders).astype(np.int64)
    bad = rest < 1  # a tiny order across many lines: put the whole amount on the last line
    unit[bad[order]] = 0
    rest = np.where(bad, list_total, rest)
    unit = np.where(last, rest[order], unit)

    line_sub = qty * unit
    disc = np.floor(line_sub * discount_frac[order]).astype(np.int64)
    residual = (list_total - gross) - np.bincount(order, weights=disc, minlength=n_orders).astype(np.int64)
    biggest = np.maximum.reduceat(line_sub, start)
    candidates = np.flatnonzero(line_sub == biggest[order])
    first = np.concatenate([[True], order[candidates][1:] != order[candidates][:-1]])
    disc[candidates[first]] += residual
    return pd.DataFrame({
        "order_idx": order,
        "line_number": (line_number + 1).astype(np.int8),
        "line_num": LINE_ID_BASE + 1 + np.arange(len(order)),
        "product_idx": product.astype(np.int32),
        "quantity": qty.astype(np.int16),
        "unit_cents": unit,
        "discount_cents": disc,
    })


def _order_histories(
    params: DemoStoreParams, rng: np.random.Generator, created_s: np.ndarray, gross: np.ndarray, end_s: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What happens to each order after it is placed, as a list of versions.

    Every order has a first version; some get a plain edit (fulfilment) a few hours to
    days later; some are cancelled within days or refunded (in part or in full) weeks
    later. Events after the store's end date have not happened yet and are dropped.
    """
    n = len(created_s)
    u = rng.random(n)
    edges = np.cumsum([
        params.cancel_rate / 2, params.cancel_rate / 2, params.full_refund_rate, params.partial_refund_rate,
    ])
    fate = np.select(
        [u < edges[0], u < edges[1], u < edges[2], u < edges[3]],
        [_FATE_VOID, _FATE_CANCEL_REFUND, _FATE_FULL_REFUND, _FATE_PARTIAL_REFUND],
        _FATE_NONE,
    )
    cancels = (fate == _FATE_VOID) | (fate == _FATE_CANCEL_REFUND)
    edited = (rng.random(n) < params.edit_rate) & ~cancels
    first_s = created_s + rng.integers(0, 91, n)
    edit_s = created_s + np.floor(rng.uniform(0.2, 3.0, n) * DAY_S).astype(np.int64)
    money_s = created_s + np.floor(
        np.where(cancels, rng.uniform(0.05, 2.5, n), rng.uniform(4.0, 45.0, n)) * DAY_S
    ).astype(np.int64)
    partial = np.maximum(np.round(gross * rng.uniform(0.1, 0.6, n)), 1).astype(np.int64)
    broken_u = rng.random(3 * n)
    broken_kind = rng.integers(_BROKEN_AMOUNT, _BROKEN_NO_ID + 1, 3 * n)

    first_unfulfilled = edited | cancels
    edited &= edit_s < end_s
    fate = np.where(money_s < end_s, fate, _FATE_NONE)
    cancels = (fate == _FATE_VOID) | (fate == _FATE_CANCEL_REFUND)
    has_refund = (fate != _FATE_NONE) & (fate != _FATE_VOID)
    refund_cents = np.where(fate == _FATE_PARTIAL_REFUND, partial, np.where(has_refund, gross, 0))
    refund_s = np.where(has_refund, money_s, -1)
    refund_rank = np.full(n, -1, dtype=np.int64)
    with_refund = np.flatnonzero(has_refund)
    refund_rank[with_refund[np.argsort(refund_s[with_refund], kind="stable")]] = np.arange(len(with_refund))
    orders = pd.DataFrame({
        "order_idx": np.arange(n),
        "fate": fate.astype(np.int8),
        "edited": edited,
        "cancel_s": np.where(cancels, money_s, -1),
        "refund_s": refund_s,
        "refund_num": np.where(has_refund, REFUND_ID_BASE + 1 + refund_rank, -1),
        "refund_cents": refund_cents,
    })

    idx = np.arange(n)
    e = np.flatnonzero(edited)
    m = np.flatnonzero(fate != _FATE_NONE)
    fm = fate[m]
    money_status = np.select(
        [fm == _FATE_VOID, fm == _FATE_PARTIAL_REFUND], [_FIN_STATUS.index("VOIDED"),
                                                           _FIN_STATUS.index("PARTIALLY_REFUNDED")],
        _FIN_STATUS.index("REFUNDED"),
    )
    money_cancelled = (fm == _FATE_VOID) | (fm == _FATE_CANCEL_REFUND)
    money_current = np.where(fm == _FATE_PARTIAL_REFUND, gross[m] - refund_cents[m], 0)
    order_idx = np.concatenate([idx, e, m])
    updated_s = np.concatenate([first_s, edit_s[e], money_s[m]])
    fin_status = np.concatenate([
        np.where(fate == _FATE_VOID, _FIN_STATUS.index("AUTHORIZED"), _FIN_STATUS.index("PAID")),
        np.full(len(e), _FIN_STATUS.index("PAID")),
        money_status,
    ])
    fulfillment = np.concatenate([first_unfulfilled.astype(int), np.zeros(len(e), int), money_cancelled.astype(int)])
    current = np.concatenate([gross, gross[e], money_current])
    refunded = np.concatenate([np.zeros(n + len(e), bool), has_refund[m]])
    cancelled = np.concatenate([np.zeros(n + len(e), bool), money_cancelled])
    total = len(order_idx)
    broken = np.where(broken_u[:total] < params.broken_record_rate, broken_kind[:total], _BROKEN_NONE)
    kind = np.concatenate([np.full(n, _V_CREATED), np.full(len(e), _V_EDIT), np.full(len(m), _V_MONEY)])
    sort = np.lexsort((order_idx, updated_s))
    versions = pd.DataFrame({
        "order_idx": order_idx[sort],
        "updated_s": updated_s[sort],
        "kind": kind[sort].astype(np.int8),
        "cancelled": cancelled[sort],
        "fin_status": fin_status[sort].astype(np.int8),
        "fulfillment_status": fulfillment[sort].astype(np.int8),
        "current_cents": current[sort],
        "has_refund": refunded[sort],
        "broken": broken[sort].astype(np.int8),
    })
    return orders, versions


def _make_profiles(
    params: DemoStoreParams, rng: np.random.Generator, rng_ids: np.random.Generator,
    first_name: np.ndarray, last_name: np.ndarray, email: np.ndarray,
    tx_customer: np.ndarray, tx_s: np.ndarray, tx_cents: np.ndarray,
    arrival_s: np.ndarray, lam: np.ndarray, p_drop: np.ndarray, nu: np.ndarray, dropout_w: np.ndarray,
    accounts: pd.DataFrame, account_of: np.ndarray, start_s: float, end_s: float,
) -> tuple[pd.DataFrame, list[str | None]]:
    """Klaviyo profiles: most buyers plus people who only signed up, sorted by `updated`.

    Klaviyo's predictive analytics are derived from the truth (orders so far, true rate,
    dropout and spend) with noise, so they are informative but not perfect.
    """
    n = len(arrival_s)
    n_extra = len(email) - n
    last_s = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_s, tx_customer, tx_s)
    first_s = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_s, tx_customer, tx_s)
    n_orders = np.bincount(tx_customer, minlength=n)
    spent = np.bincount(tx_customer, weights=tx_cents, minlength=n)

    buyer_has = rng.random(n) < params.klaviyo_buyer_rate
    people = np.concatenate([np.flatnonzero(buyer_has), n + np.arange(n_extra)])
    k = len(people)
    is_buyer = people < n
    b = np.minimum(people, n - 1)
    arrival = np.floor(arrival_s[b]).astype(np.int64)
    signup_first = rng.random(k) < 0.35
    created_buyer = np.where(
        signup_first, arrival - np.floor(rng.uniform(1, 120, k) * DAY_S).astype(np.int64),
        arrival + rng.integers(0, 600, k),
    )
    created_extra = np.floor(start_s - 180 * DAY_S + rng.random(k) * (end_s - DAY_S - start_s + 180 * DAY_S))
    created = np.where(is_buyer, created_buyer, created_extra.astype(np.int64))
    last_event = np.where(is_buyer, last_s[b], -1)

    consent = np.where(
        is_buyer, rng.choice(3, k, p=[0.6, 0.15, 0.25]), rng.choice(3, k, p=[0.5, 0.1, 0.4])
    ).astype(np.int8)
    consent_s = np.select(
        [consent == 0, consent == 1],
        [created + rng.integers(0, 3600, k), created + np.floor(rng.uniform(1, 300, k) * DAY_S).astype(np.int64)],
        -1,
    )
    consent_s = np.where(consent_s >= 0, np.minimum(consent_s, int(end_s) - 1), -1)
    updated = np.maximum.reduce([
        created + rng.integers(60, 7 * DAY_S, k),
        np.where(last_event >= 0, last_event + rng.integers(60, 2 * DAY_S, k), -1),
        consent_s,
    ])
    updated = np.maximum(np.minimum(updated, int(end_s) - 1), created)

    messy = np.where(rng.random(k) < params.messy_email_rate / 2, rng.integers(0, 4, k), -1)
    profile_email = _messy(pd.Series(email[people]), messy).to_numpy(dtype=object)
    phone_digits = rng.integers(0, 10_000_000, k)
    phone = np.where(
        rng.random(k) < 0.5, pd.Series(phone_digits).map(lambda d: f"+1555{d:07d}").to_numpy(dtype=object), None
    )
    acc = np.where(is_buyer, account_of[b], -1)
    acc_num = accounts["account_num"].to_numpy()
    external_id = np.where(
        acc >= 0, pd.Series(acc_num[np.maximum(acc, 0)]).astype(str).to_numpy(dtype=object), None
    )
    weights = np.array([loc[5] for loc in _LOCATIONS])
    location_idx = rng.choice(len(_LOCATIONS), k, p=weights / weights.sum()).astype(np.int8)

    # predictive analytics, as Klaviyo would estimate them at the end date
    has_pa = is_buyer & (rng.random(k) < min(1.0, params.predictive_rate / params.klaviyo_buyer_rate))
    blank = rng.random(k) < params.predictive_null_rate
    alive = np.isnan(dropout_w[b])
    orders_b = n_orders[b].astype(float)
    historic = np.round(spent[b] / 100.0, 2)
    aov = np.round(spent[b] / np.maximum(orders_b, 1) / 100.0, 2)
    gap_days = np.where(
        orders_b > 1, np.round((last_s[b] - first_s[b]) / np.maximum(orders_b - 1, 1) / DAY_S), np.nan
    )
    rate = lam[b] * p_drop[b]
    expected_orders = np.where(
        alive, -np.expm1(-rate * 52.18) / p_drop[b] * rng.lognormal(0, 0.3, k), rng.uniform(0, 0.3, k)
    )
    predicted_orders = np.round(expected_orders, 2)
    predicted_clv = np.round(expected_orders * params.gg_p / nu[b] * rng.lognormal(0, 0.2, k), 2)
    churn = np.round(np.where(alive, rng.beta(2, 5, k), rng.beta(5, 2, k)), 2)
    gap_s = np.minimum(1.0 / np.maximum(lam[b], 1e-6), 104) * WEEK_S
    next_order = np.maximum(last_s[b] + gap_s, end_s + rng.uniform(1, 30, k) * DAY_S)
    next_order = np.where(churn < 0.8, np.floor(next_order), -1).astype(np.int64)

    def pa(values: np.ndarray, keep_when_blank: bool = False) -> np.ndarray:
        return np.where(has_pa & (keep_when_blank | ~blank), values, np.nan)

    profile_id = _ulids(rng_ids, created * 1000 + rng_ids.integers(0, 1000, k))
    profiles = pd.DataFrame({
        "profile_id": profile_id,
        "person": people,
        "email": profile_email,
        "phone_number": phone,
        "external_id": external_id,
        "first_name": first_name[people],
        "last_name": last_name[people],
        "location_idx": location_idx,
        "created_s": created,
        "updated_s": updated,
        "last_event_s": last_event,
        "consent": consent,
        "consent_s": consent_s,
        "has_pa": has_pa,
        "pa_historic_clv": pa(historic, True),
        "pa_predicted_clv": pa(predicted_clv),
        "pa_total_clv": pa(np.round(historic + predicted_clv, 2)),
        "pa_historic_number_of_orders": pa(orders_b, True),
        "pa_predicted_number_of_orders": pa(predicted_orders),
        "pa_average_days_between_orders": pa(gap_days, True),
        "pa_average_order_value": pa(aov, True),
        "pa_churn_probability": pa(churn),
        "pa_next_order_s": np.where(has_pa & ~blank, next_order, -1),
        "pa_affinity": rng.integers(0, len(_AFFINITIES), k).astype(np.int8),
    })
    profiles = profiles.iloc[np.lexsort((people, updated))].reset_index(drop=True)
    profile_of = np.full(n, None, dtype=object)
    buyers = profiles["person"].to_numpy() < n
    profile_of[profiles["person"].to_numpy()[buyers]] = profiles["profile_id"].to_numpy()[buyers]
    return profiles, profile_of.tolist()


def _sql_list(values) -> str:
    """A DuckDB list literal of string constants (values are module constants, not input)."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


_ORDER_CHUNK = 500_000


def _acquisition_fragments(store: DemoStore) -> pd.DataFrame:
    """order_idx -> the acquisition keys as a JSON fragment (``,"sourceName":…``) for the SQL renderer."""
    combo_of, combos = assign_journeys(store)
    text = np.array(["," + json.dumps(fields, separators=(",", ":"))[1:-1] for fields in combos], dtype=object)
    return pd.DataFrame({"order_idx": np.arange(len(combo_of)), "fragment": text[combo_of]})


def _write_raw_tables(store: DemoStore, conn, ingested_at: datetime) -> dict[str, int]:
    if ingested_at.tzinfo is not None:
        ingested_at = ingested_at.astimezone(timezone.utc).replace(tzinfo=None)
    cur = store.params.shop_currency
    conn.execute("create schema if not exists raw")
    conn.execute("""
        create or replace table raw.shopify_orders (
            order_id varchar, updated_at timestamp, partition_date date, payload json,
            source varchar, ingested_at timestamp)""")
    conn.execute("""
        create or replace table raw.klaviyo_profiles (
            profile_id varchar, updated_at timestamp, payload json, source varchar, ingested_at timestamp)""")
    conn.execute("""
        create or replace table raw.shopify_shop (
            shop_domain varchar, iana_timezone varchar, currency_code varchar, source varchar, fetched_at timestamp)""")
    conn.execute(
        "insert into raw.shopify_shop values ('demo', ?, ?, 'demo', ?)",
        [store.params.shop_timezone, cur, ingested_at],
    )
    conn.execute("""
        create or replace temp macro _demo_money(c) as
            (c // 100)::varchar || '.' || lpad((c % 100)::varchar, 2, '0')""")
    conn.execute("""
        create or replace temp macro _demo_ts(s, suffix) as
            case when s >= 0 then strftime(make_timestamp(s * 1000000), '%Y-%m-%dT%H:%M:%S') || suffix end""")
    conn.execute("""
        create or replace temp macro _demo_set(c, currency) as
            '{"shopMoney":{"amount":"' || _demo_money(c) || '","currencyCode":"' || currency || '"}}'""")

    frames = {
        "_demo_products": store.products[["product_idx", "product_num", "sku", "title", "category"]],
        "_demo_accounts": store.accounts[["account_idx", "account_num", "email"]],
        "_demo_orders_df": store.orders,
        "_demo_acquisition": _acquisition_fragments(store),
        "_demo_versions_df": store.order_versions,
        "_demo_lines_df": store.lines,
        "_demo_profiles_df": store.profiles,
        "_demo_locations": pd.DataFrame(
            [loc[:5] for loc in _LOCATIONS], columns=["city", "country", "region", "zip", "timezone"]
        ).assign(location_idx=np.arange(len(_LOCATIONS))),
    }
    for name, frame in frames.items():
        conn.register(name, frame)
    try:
        # materialize once, ordered by order, so each chunk below reads only its own blocks
        conn.execute(
            "create or replace temp table _demo_lines as select *, "
            "line_number = max(line_number) over (partition by order_idx) as is_last "
            "from _demo_lines_df order by order_idx"
        )
        conn.execute(
            "create or replace temp table _demo_versions as select * from _demo_versions_df order by order_idx"
        )
        conn.execute("create or replace temp table _demo_orders as select * from _demo_orders_df")
        n_orders = len(store.orders)
        for lo in range(0, n_orders, _ORDER_CHUNK):
            conn.execute(_ORDERS_SQL.format(
                fin=_sql_list(_FIN_STATUS), fulfillment=_sql_list(_FULFILLMENT),
            ), {"cur": cur, "lo": lo, "hi": lo + _ORDER_CHUNK, "ingested": ingested_at})
        conn.execute(_profiles_sql(), {"ingested": ingested_at})
        counts = {
            "raw.shopify_orders": conn.execute("select count(*) from raw.shopify_orders").fetchall()[0][0],
            "raw.klaviyo_profiles": conn.execute("select count(*) from raw.klaviyo_profiles").fetchall()[0][0],
        }
    finally:
        for name in frames:
            conn.unregister(name)
        for table in ("_demo_lines", "_demo_versions", "_demo_orders"):
            conn.execute(f"drop table if exists {table}")
    return counts


# Orders are most of the bytes, so their JSON is concatenated as text (about 3x faster than
# to_json over nested structs); free-text values go through to_json() for escaping. The
# equality test against `order_nodes()` keeps this honest.
_ORDERS_SQL = """
insert into raw.shopify_orders
with product_json as (
    select product_idx,
        ',"sku":' || to_json(sku) || ',"title":' || to_json(title) || ',"isGiftCard":false'
        || ',"product":{{"id":"gid://shopify/Product/' || product_num || '","productType":' || to_json(category) || '}}'
        as fragment
    from _demo_products
),
line_nodes as (
    -- per version (an order has at most one version of each kind): currentQuantity depends on
    -- the edit and the refund the version has seen
    select v.order_idx, v.kind, '[' || string_agg(
        '{{"id":"gid://shopify/LineItem/' || l.line_num || '","quantity":' || (l.quantity + l.extra)
        || ',"currentQuantity":' || (l.quantity + case when v.post_edit then 0 else l.extra end
            - case when v.has_refund and o.refund_scope = 2 then l.quantity
                   when v.has_refund and o.refund_scope = 1 and l.is_last then 1 else 0 end)
        || p.fragment
        || ',"originalUnitPriceSet":' || _demo_set(l.unit_cents, $cur)
        || ',"totalDiscountSet":' || _demo_set(l.discount_cents, $cur) || '}}',
        ',' order by l.line_number) || ']' as nodes,
        '[' || coalesce(string_agg(case when o.refund_scope = 2 or (o.refund_scope = 1 and l.is_last) then
            '{{"lineItem":{{"id":"gid://shopify/LineItem/' || l.line_num || '","isGiftCard":false}},"quantity":' || l.quantity
            || ',"subtotalSet":' || _demo_set(l.quantity * l.unit_cents - l.discount_cents, $cur) || '}}' end,
        ',' order by l.line_number), '') || ']' as refund_lines
    from _demo_versions v
    join _demo_orders o on o.order_idx = v.order_idx
    join _demo_lines l on l.order_idx = v.order_idx
    join product_json p on p.product_idx = l.product_idx
    where v.order_idx >= $lo and v.order_idx < $hi
    group by v.order_idx, v.kind
)
select
    case when v.broken = 2 then null else 'gid://shopify/Order/' || o.order_num end,
    make_timestamp(v.updated_s * 1000000),
    make_timestamp(v.updated_s * 1000000)::date,
    (case when v.broken = 2 then '{{' else '{{"id":"gid://shopify/Order/' || o.order_num || '",' end
    || '"name":"#' || (1001 + o.order_idx)
    || '","createdAt":"' || _demo_ts(o.created_s, 'Z')
    || '","processedAt":"' || _demo_ts(o.created_s, 'Z')
    || '","updatedAt":"' || _demo_ts(v.updated_s, 'Z')
    || '","cancelledAt":' || case when v.cancelled then '"' || _demo_ts(o.cancel_s, 'Z') || '"' else 'null' end
    || ',"currencyCode":"' || $cur
    || '","presentmentCurrencyCode":"' || o.currency_code
    || '","test":' || case when o.is_test then 'true' else 'false' end
    || ',"email":' || coalesce(to_json(coalesce(a.email, o.guest_email)), 'null')
    || ',"displayFinancialStatus":"' || {fin}[v.fin_status + 1]
    || '","displayFulfillmentStatus":"' || {fulfillment}[v.fulfillment_status + 1]
    || '","taxesIncluded":false'
    || ',"totalPriceSet":{{"shopMoney":{{"amount":"'
    || case when v.broken = 1 then replace(_demo_money(v.total_cents), '.', ',') else _demo_money(v.total_cents) end
    || '","currencyCode":"' || $cur || '"}},"presentmentMoney":{{"amount":"' || _demo_money(v.presentment_cents)
    || '","currencyCode":"' || o.currency_code || '"}}}}'
    || ',"subtotalPriceSet":' || _demo_set(v.sub_cents, $cur)
    || ',"currentTotalPriceSet":' || _demo_set(v.current_cents, $cur)
    || ',"totalDiscountsSet":' || _demo_set(o.discount_cents, $cur)
    || ',"totalTaxSet":' || _demo_set(v.tax_cents, $cur)
    || ',"totalShippingPriceSet":' || _demo_set(v.ship_cents, $cur)
    || ',"customer":' || case when o.account_idx >= 0
        then '{{"id":"gid://shopify/Customer/' || a.account_num || '","defaultEmailAddress":{{"emailAddress":'
             || to_json(a.email) || '}}}}'
        else 'null' end
    || ',"lineItems":{{"nodes":' || ln.nodes || '}}'
    || ',"refunds":' || case when v.has_refund and o.refund_scope > 0
        then '[{{"id":"gid://shopify/Refund/' || o.refund_num || '","createdAt":"' || _demo_ts(o.refund_s, 'Z')
             || '","totalRefundedSet":' || _demo_set(o.refund_cents, $cur)
             || ',"refundLineItems":{{"nodes":' || ln.refund_lines || '}}'
             || ',"refundShippingLines":{{"nodes":' || case when o.refund_ship_cents > 0
                 then '[{{"subtotalAmountSet":' || _demo_set(o.refund_ship_cents, $cur)
                      || ',"taxAmountSet":' || _demo_set(0, $cur) || '}}]' else '[]' end || '}}}}]'
        else '[]' end
    || acq.fragment
    || '}}')::json,
    'demo',
    $ingested
from _demo_versions v
join _demo_orders o on o.order_idx = v.order_idx
join line_nodes ln on ln.order_idx = v.order_idx and ln.kind = v.kind
left join _demo_accounts a on a.account_idx = o.account_idx
join _demo_acquisition acq on acq.order_idx = v.order_idx
where v.order_idx >= $lo and v.order_idx < $hi
"""


def _profiles_sql() -> str:
    """Profile rendering; the predictive_analytics key is present only where Klaviyo has it."""
    attributes = """
        'email': pr.email,
        'phone_number': pr.phone_number,
        'external_id': pr.external_id,
        'first_name': pr.first_name,
        'last_name': pr.last_name,
        'organization': null::varchar,
        'location': {'city': l.city, 'country': l.country, 'region': l.region, 'zip': l.zip,
                     'timezone': l.timezone},
        'created': _demo_ts(pr.created_s, '+00:00'),
        'updated': _demo_ts(pr.updated_s, '+00:00'),
        'last_event_date': _demo_ts(pr.last_event_s, '+00:00'),
        'properties': '{}'::json,
        'subscriptions': {'email': {'marketing': {
            'can_receive_email_marketing': pr.consent = 0,
            'consent': CONSENTS[pr.consent + 1],
            'consent_timestamp': _demo_ts(pr.consent_s, '+00:00')}}}
    """.replace("CONSENTS", _sql_list(_CONSENTS))
    affinities = "[" + ", ".join(_sql_list(a) for a in _AFFINITIES) + "]"
    predictive = f"""
        'predictive_analytics': {{
            'historic_clv': pr.pa_historic_clv,
            'predicted_clv': pr.pa_predicted_clv,
            'total_clv': pr.pa_total_clv,
            'historic_number_of_orders': pr.pa_historic_number_of_orders,
            'predicted_number_of_orders': pr.pa_predicted_number_of_orders,
            'average_days_between_orders': pr.pa_average_days_between_orders,
            'average_order_value': pr.pa_average_order_value,
            'churn_probability': pr.pa_churn_probability,
            'expected_date_of_next_order': _demo_ts(pr.pa_next_order_s, '+00:00'),
            'ranked_channel_affinity': {affinities}[pr.pa_affinity + 1]}}
    """

    def profile(attrs: str) -> str:
        return f"""to_json({{
            'type': 'profile',
            'id': pr.profile_id,
            'attributes': {{{attrs}}},
            'links': {{'self': 'https://a.klaviyo.com/api/profiles/' || pr.profile_id || '/'}}}})"""

    return f"""
        insert into raw.klaviyo_profiles
        select
            pr.profile_id,
            make_timestamp(pr.updated_s * 1000000),
            case when pr.has_pa then {profile(attributes + ", " + predictive)} else {profile(attributes)} end,
            'demo',
            $ingested
        from _demo_profiles_df pr
        join _demo_locations l on l.location_idx = pr.location_idx
    """


# ----------------------------------------------------------------- acquisition journeys
# First-visit channels of a customer's first order, with their share of new customers and how
# strongly the choice leans on the customer's (log) purchase rate: e-mail subscribers buy again
# much more often than shoppers brought in by a paid social ad. Shares and leanings are made up
# but in the usual order for a small Shopify brand.
_CHANNELS = ("direct", "organic_search", "paid_social", "email")
_CHANNEL_SHARE = np.array([0.30, 0.30, 0.25, 0.15])
_CHANNEL_LEAN = np.array([0.3, 0.0, -0.7, 0.9])
_POS_SHARE = 0.03  # real orders rung up in a shop: no online session, so no journey


def _campaign(channel: str, when: date) -> str | None:
    """The campaign a visit on ``when`` would carry (seasonal pushes, else the always-on one)."""
    bfcm = (when.month == 11 and when.day >= 15) or (when.month == 12 and when.day <= 5)
    if channel == "paid_social":
        if bfcm:
            return f"bfcm_{when.year}"
        return "spring_sale" if when.month in (3, 4) else "prospecting_always_on"
    if channel == "email":
        return f"bfcm_{when.year}" if bfcm else "welcome_series"
    if channel == "email_repeat":
        return f"bfcm_{when.year}" if bfcm else f"newsletter_{when.year}_{when.month:02d}"
    return None


def _visit(channel: str, campaign: str | None, variant: int) -> dict | None:
    """A ``CustomerVisit`` as the Admin API returns it for a session that came from ``channel``."""
    shop = "https://demo-store.example.com"
    if channel == "direct":
        return {"source": "direct", "sourceType": None, "landingPage": f"{shop}/", "referrerUrl": None,
                "utmParameters": None}
    if channel == "organic_search":
        engine = ("google", "bing")[variant % 2] if variant % 5 == 0 else "google"
        return {"source": engine, "sourceType": "SEO", "landingPage": f"{shop}/products/best-sellers",
                "referrerUrl": f"https://www.{engine}.com/", "utmParameters": None}
    if channel == "paid_social":
        network = ("facebook", "instagram")[variant % 2]
        return {"source": network, "sourceType": "AD", "landingPage": f"{shop}/collections/new?utm_source={network}",
                "referrerUrl": f"https://l.{network}.com/",
                "utmParameters": {"source": network, "medium": "paid_social", "campaign": campaign,
                                  "content": ("video_a", "carousel_b")[variant // 2 % 2], "term": None}}
    # e-mail (Klaviyo flows and campaigns tag their links with utm_source=klaviyo)
    return {"source": "email", "sourceType": "NEWSLETTER", "landingPage": f"{shop}/?utm_source=klaviyo",
            "referrerUrl": None,
            "utmParameters": {"source": "klaviyo", "medium": "email", "campaign": campaign, "content": None,
                              "term": None}}


def _discount_code(frac: float, first: bool, channel: str) -> str:
    """The code behind a discount of ``frac`` (the demo's discounts are 10/15/20/25 %)."""
    if frac < 0.125:
        return "WELCOME10" if first else "THANKYOU10"
    if frac < 0.175:
        return "SOCIAL15" if first and channel == "paid_social" else "SPRING15"
    return "VIP20" if frac < 0.225 else "BFCM25"


def assign_journeys(store: DemoStore) -> tuple[np.ndarray, list[dict]]:
    """Acquisition fields of every order: (combination index per order, the distinct combinations).

    Each combination is the ``sourceName``, ``discountCodes`` and ``customerJourneySummary`` of
    an order (distinct combinations keep a million-order store cheap to render). A shopper's
    first order carries the channel that brought them, drawn with a lean on their purchase rate
    (so the channels differ in later value); later orders come mostly from e-mail and direct
    visits; POS and test (draft) orders have no journey. Drawn from their own random stream, so
    the rest of the store is unchanged.
    """
    cached = getattr(store, "_journeys", None)
    if cached is not None:
        return cached
    rng = np.random.default_rng(np.random.SeedSequence([store.params.seed, 22]))
    orders = store.orders
    n = len(orders)
    log_rate = np.log(store.truth_customers["lambda"].to_numpy() + 1e-9)
    z = (log_rate - log_rate.mean()) / (log_rate.std() or 1.0)
    weights = _CHANNEL_SHARE[None, :] * np.exp(_CHANNEL_LEAN[None, :] * z[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    channel_of = (rng.random(len(z))[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    channel_of = np.minimum(channel_of, len(_CHANNELS) - 1)

    individual = orders["individual"].to_numpy()
    is_test = orders["is_test"].to_numpy()
    created = pd.to_datetime(orders["created_s"].to_numpy(), unit="s")
    # orders are sorted by time, so cumcount is the shopper's order number (0 = first order)
    order_number = pd.Series(np.where(is_test, -1, individual)).groupby(np.where(is_test, -1, individual)).cumcount()
    order_number = np.where(is_test, -1, order_number.to_numpy())
    first = order_number == 0
    pos = ~is_test & ~first & (rng.random(n) < _POS_SHARE)
    repeat_channel = rng.choice(np.array(["email_repeat", "direct", "organic_search"]), n, p=[0.5, 0.35, 0.15])
    channel = np.where(first, np.asarray(_CHANNELS, dtype=object)[channel_of[np.maximum(individual, 0)]],
                       repeat_channel.astype(object))
    month, day, year = created.month.to_numpy(), created.day.to_numpy(), created.year.to_numpy()
    bfcm = ((month == 11) & (day >= 15)) | ((month == 12) & (day <= 5))
    frame = pd.DataFrame({
        "kind": np.where(is_test, "test", np.where(pos, "pos", "web")),
        "channel": channel,
        "bfcm": bfcm,
        "spring": np.isin(month, (3, 4)) & (channel == "paid_social"),
        "year": year,
        "month": np.where(channel == "email_repeat", month, 0),
        "variant": rng.integers(0, 20, n),
        "last_differs": rng.random(n) < 0.3,
        "order_number": order_number,
        "first": first,
    })
    gross = orders["gross_cents"].to_numpy()
    discount = orders["discount_cents"].to_numpy()
    frame["frac"] = np.round(np.where(discount > 0, discount / np.maximum(gross + discount, 1), 0.0), 2)
    # campaigns only depend on the season for the channels that have them
    frame.loc[~frame["channel"].isin(["paid_social", "email", "email_repeat"]), ["bfcm", "spring", "year"]] = (
        False, False, 0)
    test_rows = frame["kind"] == "test"
    for column in frame.columns.difference(["kind"]):  # one combination for every test order
        frame.loc[test_rows, column] = frame[column].dtype.type(0) if frame[column].dtype != object else ""
    combo_of, uniques = pd.MultiIndex.from_frame(frame).factorize()
    combo_list = [_journey_fields(dict(zip(frame.columns, values))) for values in uniques]
    store._journeys = (np.asarray(combo_of, dtype=np.int64), combo_list)
    return store._journeys


def _journey_fields(row: dict) -> dict:
    """``sourceName``, ``discountCodes``, ``customerJourneySummary`` of one order combination."""
    if row["kind"] == "test":
        return {"sourceName": "shopify_draft_order", "discountCodes": [], "customerJourneySummary": None}
    channel = str(row["channel"])
    month = 11 if row["bfcm"] else (3 if row["spring"] else max(int(row["month"]), 1))
    when = date(max(int(row["year"]), 2000), month, 20 if row["bfcm"] else 1)
    campaign = _campaign(channel, when)
    codes = [_discount_code(float(row["frac"]), bool(row["first"]), channel)] if row["frac"] > 0 else []
    if row["kind"] == "pos":
        return {"sourceName": "pos", "discountCodes": codes, "customerJourneySummary": None}
    variant = int(row["variant"])
    first_visit = _visit("email" if channel == "email_repeat" else channel, campaign, variant)
    last_visit = _visit("direct", None, 0) if row["last_differs"] and channel == "paid_social" else first_visit
    return {"sourceName": "web", "discountCodes": codes, "customerJourneySummary": {
        "customerOrderIndex": int(row["order_number"]) + 1, "daysToConversion": variant % 8,
        "firstVisit": first_visit, "lastVisit": last_visit,
    }}
