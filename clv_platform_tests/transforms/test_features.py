"""Point-in-time customer features on hand-made staging tables whose right answers are known."""

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from clv_platform.transforms.features import (
    FEATURE_COLUMNS,
    OBSERVED_COLUMNS,
    build_features,
    build_scoring_frame,
    build_training_frame,
    materialize_features,
    training_query,
)
from clv_platform.transforms.order_history import StaleOrderHistory, build_order_history, recomputed_at
from clv_platform.transforms.order_gaps import order_gaps, silent_tail

CUTOFF = date(2024, 6, 30)


@dataclass
class Order:
    order_id: str
    customer_id: str | None
    order_date: date
    gross: float
    refunded: float = 0.0
    discount: float = 0.0
    cancelled_at: date | None = None
    lines: list[tuple[str, str, int]] = field(default_factory=lambda: [("P0", "Misc", 1)])
    minute: int = 0
    refunded_on: date | None = None  # day the refund was made; None = the order day
    second_refund: tuple[float, date] | None = None  # another refund of the order: amount, day
    cancelled_unknown: bool = False  # cancelled, with no cancellation date


def build_staging(conn: duckdb.DuckDBPyConnection, orders: list[Order], profiles: dict | None = None) -> None:
    """Create staging.orders / order_lines / customers / refunds (contract columns the features read)."""
    conn.execute("create schema if not exists staging")
    rows, lines, refunds = [], [], []
    for o in orders:
        if o.refunded:
            refunds.append({"order_id": o.order_id, "refund_id": f"r-{o.order_id}", "customer_id": o.customer_id,
                            "refunded_at": datetime.combine(o.refunded_on or o.order_date, datetime.min.time()),
                            "amount": o.refunded})
        if o.second_refund:
            amount, day = o.second_refund
            refunds.append({"order_id": o.order_id, "refund_id": f"r2-{o.order_id}", "customer_id": o.customer_id,
                            "refunded_at": datetime.combine(day, datetime.min.time()) + timedelta(hours=12),
                            "amount": amount})
        cancelled = o.cancelled_at is not None or o.cancelled_unknown
        created = datetime.combine(o.order_date, datetime.min.time()) + timedelta(minutes=o.minute)
        rows.append({
            "order_id": o.order_id, "customer_id": o.customer_id, "order_date": o.order_date,
            "created_at": created, "is_cancelled": cancelled,
            "cancelled_at": datetime.combine(o.cancelled_at, datetime.min.time()) if o.cancelled_at else None,
            "gross_revenue": o.gross, "discount_amount": o.discount, "refunded_amount": o.refunded,
            "net_revenue": 0.0 if cancelled else max(o.gross - o.refunded, 0.0),
            "item_quantity": sum(q for _, _, q in o.lines),
        })
        for n, (product, category, qty) in enumerate(o.lines, start=1):
            lines.append({"order_id": o.order_id, "line_number": n, "customer_id": o.customer_id,
                          "order_date": o.order_date, "product_id": product, "category": category,
                          "quantity": qty, "is_cancelled": cancelled})
    customers = {o.customer_id for o in orders if o.customer_id} | set(profiles or {})
    people = [{"customer_id": c, "country": "ES", "email_consent": "SUBSCRIBED",
               "can_receive_email_marketing": True, "profile_created_at": (profiles or {}).get(c),
               "order_count": 999, "first_order_at": datetime(2000, 1, 1), "last_order_at": datetime(2099, 1, 1)}
              for c in sorted(customers)]
    refund_columns = ["order_id", "refund_id", "customer_id", "refunded_at", "refunded_on", "amount"]
    for refund in refunds:  # staging dates each refund (the shop's calendar day; UTC here)
        refund["refunded_on"] = refund["refunded_at"].date()
    frames = {"orders": pd.DataFrame(rows), "order_lines": pd.DataFrame(lines), "customers": pd.DataFrame(people),
              "refunds": pd.DataFrame(refunds, columns=refund_columns)}
    casts = {
        "orders": """order_id, customer_id::varchar as customer_id, order_date::date as order_date,
                     created_at::timestamp as created_at, is_cancelled, cancelled_at::timestamp as cancelled_at,
                     cancelled_at::date as cancelled_on,
                     gross_revenue::decimal(18,2) as gross_revenue, discount_amount::decimal(18,2) as discount_amount,
                     refunded_amount::decimal(18,2) as refunded_amount, net_revenue::decimal(18,2) as net_revenue,
                     item_quantity::bigint as item_quantity""",
        "order_lines": """order_id, line_number::integer as line_number, customer_id::varchar as customer_id,
                          order_date::date as order_date, product_id, category, quantity::integer as quantity,
                          is_cancelled""",
        "refunds": """order_id, refund_id, customer_id::varchar as customer_id, refunded_at::timestamp as refunded_at,
                      refunded_on::date as refunded_on, amount::decimal(18,2) as amount""",
        "customers": """customer_id, country, email_consent, can_receive_email_marketing,
                        profile_created_at::timestamp as profile_created_at, order_count,
                        first_order_at, last_order_at""",
    }
    for name, frame in frames.items():
        conn.register("_frame", frame)
        conn.execute(f"create or replace table staging.{name} as select {casts[name]} from _frame")
        conn.unregister("_frame")
    build_order_history(conn)


def hand_made() -> list[Order]:
    return [
        Order("a1", "A", date(2024, 1, 1), 100, discount=10, lines=[("P1", "Apparel", 2)]),
        Order("a2", "A", date(2024, 3, 1), 50, lines=[("P2", "Shoes", 1)]),
        Order("a3", "A", date(2024, 3, 1), 30, refunded=30, lines=[("P1", "Apparel", 1)], minute=5),
        Order("a4", "A", date(2024, 6, 10), 80, refunded=20, lines=[("P3", "Apparel", 3)]),
        Order("a5", "A", date(2024, 6, 20), 500, cancelled_at=date(2024, 6, 21), lines=[("P9", "Toys", 1)]),
        Order("a6", "A", date(2024, 8, 1), 1000, lines=[("P8", "Books", 1)]),
        Order("b1", "B", date(2024, 5, 1), 40, cancelled_at=date(2024, 7, 5)),
        Order("c1", "C", date(2024, 2, 1), 70, cancelled_at=date(2024, 2, 2)),
        Order("d1", "D", date(2024, 6, 30), 25),
        Order("g1", None, date(2024, 4, 1), 60),
    ]


@pytest.fixture
def conn(tmp_path):
    with duckdb.connect(str(tmp_path / "clv.duckdb")) as c:
        yield c


def row(frame: pd.DataFrame, customer: str) -> pd.Series:
    return frame.set_index("customer_id").loc[customer]


def test_hand_computed_customer(conn):
    build_staging(conn, hand_made(), profiles={"A": datetime(2023, 12, 1, 9), "D": datetime(2024, 7, 15)})
    a = row(build_features(conn, CUTOFF), "A")
    # purchase days: 01-01 (net 100), 03-01 (two orders: 50 + fully refunded 0), 06-10 (net 60)
    assert a.days_since_last_order == 20
    assert a.frequency == 2
    assert a.purchase_days == 3
    assert a.order_count == 4
    assert a.monetary == pytest.approx(55.0)
    assert a.avg_order_value == pytest.approx(210 / 4)
    assert a.total_net_spend == pytest.approx(210.0)
    assert a.T_days == 181
    assert a.first_to_last_order_days == 161
    assert a.T_weeks == pytest.approx(181 / 7)
    assert a.recency_weeks == pytest.approx(161 / 7)
    assert a.mean_interpurchase_days == pytest.approx(80.5)
    assert a.median_interpurchase_days == pytest.approx(80.5)
    assert a.std_interpurchase_days == pytest.approx(41 / math.sqrt(2))
    assert a.recency_to_interval_ratio == pytest.approx(20 / 80.5)
    assert (a.orders_last_30d, a.orders_last_90d, a.orders_last_365d) == (1, 1, 4)
    assert a.spend_last_90d == pytest.approx(60.0)
    assert a.spend_prev_90d == pytest.approx(50.0)
    assert a.spend_trend_90d == pytest.approx(10 / 110)
    assert a.items_per_order == pytest.approx(7 / 4)
    assert (a.distinct_products, a.distinct_categories) == (3, 2)
    assert a.refund_rate == pytest.approx(50 / 260)
    assert a.discount_share == pytest.approx(10 / 270)
    assert a.first_order_value == pytest.approx(100.0)
    assert a.cohort_month == pd.Timestamp(2024, 1, 1)
    assert a.profile_age_days == 212
    assert a.feature_cutoff == pd.Timestamp(CUTOFF)


def test_population_cancellations_and_single_purchase(conn):
    build_staging(conn, hand_made(), profiles={"D": datetime(2024, 7, 15)})
    features = build_features(conn, CUTOFF)
    # C only has a cancelled order; the guest order has no customer; A, B, D purchased.
    assert list(features.customer_id) == ["A", "B", "D"]
    # B's order was cancelled after the cutoff: on the cutoff it was a live purchase.
    b = row(features, "B")
    assert (b.order_count, b.total_net_spend, b.frequency, b.monetary) == (1, 40.0, 0, 0.0)
    assert pd.isna(b.mean_interpurchase_days) and pd.isna(b.recency_to_interval_ratio)
    # D ordered on the cutoff day; its profile was created after the cutoff.
    d = row(features, "D")
    assert (d.days_since_last_order, d.T_days, d.T_weeks) == (0, 0, 0.0)
    assert pd.isna(d.profile_age_days)
    # after B's cancellation date B has no purchase left; the cancelled 500 never counts for A
    later = build_features(conn, date(2024, 7, 10))
    assert "B" not in set(later.customer_id)
    assert row(later, "A").total_net_spend == pytest.approx(210.0)


def random_orders(n_customers: int, seed: int) -> list[Order]:
    rng = random.Random(seed)
    orders, start = [], date(2023, 1, 1)
    for c in range(n_customers):
        for k in range(rng.randint(1, 8)):
            day = start + timedelta(days=rng.randint(0, 700))
            gross = round(rng.uniform(5, 300), 2)
            cancelled = day + timedelta(days=rng.randint(0, 60)) if rng.random() < 0.1 else None
            refunded = gross if rng.random() < 0.05 else (round(gross / 3, 2) if rng.random() < 0.1 else 0)
            refunded_on = day + timedelta(days=rng.randint(0, 90))  # refunds often land weeks later
            lines = [(f"P{rng.randint(1, 40)}", f"K{rng.randint(1, 6)}", rng.randint(1, 3))
                     for _ in range(rng.randint(1, 3))]
            orders.append(Order(f"o{c}-{k}", f"cust{c:04d}", day, gross, refunded=refunded,
                                discount=round(gross * rng.random() * 0.2, 2), cancelled_at=cancelled,
                                lines=lines, minute=k, refunded_on=refunded_on))
    return orders


def as_known_at(orders: list[Order], cutoff: date) -> list[Order]:
    """The store as it looked on `cutoff`: later orders do not exist, later cancellations and refunds not yet."""
    known = []
    for o in orders:
        if o.order_date <= cutoff:
            cancelled = o.cancelled_at if o.cancelled_at and o.cancelled_at <= cutoff else None
            refund_known = (o.refunded_on or o.order_date) <= cutoff
            known.append(Order(o.order_id, o.customer_id, o.order_date, o.gross, o.refunded if refund_known else 0.0,
                               o.discount, cancelled, o.lines, o.minute, o.refunded_on if refund_known else None))
    return known


@pytest.mark.parametrize("cutoff", [date(2023, 6, 15), date(2024, 2, 29), date(2024, 11, 30)])
def test_point_in_time_no_feature_reads_the_future(tmp_path, cutoff):
    orders = random_orders(150, seed=cutoff.toordinal())
    with duckdb.connect(str(tmp_path / "full.duckdb")) as full, \
            duckdb.connect(str(tmp_path / "truncated.duckdb")) as truncated:
        build_staging(full, orders)
        build_staging(truncated, as_known_at(orders, cutoff))
        expected = build_features(truncated, cutoff)
        assert len(expected) > 50
        pd.testing.assert_frame_equal(build_features(full, cutoff), expected, check_exact=False, rtol=1e-12)

        # flood the future with huge orders, new products and new customers: nothing moves
        future = [Order(f"f{i}", f"cust{i % 200:04d}", cutoff + timedelta(days=1 + i % 30), 1e9,
                        lines=[(f"NEW{i}", f"NEWCAT{i}", 1000)]) for i in range(400)]
        build_staging(full, orders + future)
        pd.testing.assert_frame_equal(build_features(full, cutoff), expected, check_exact=False, rtol=1e-12)


def test_training_labels_only_from_the_horizon_window(conn):
    c, h = date(2024, 6, 30), 30
    start = c - timedelta(days=h)  # 2024-05-31
    build_staging(conn, [
        Order("x0", "X", date(2024, 1, 10), 10),
        Order("x1", "X", start, 20),  # last feature day: a feature, not a label
        Order("x2", "X", start + timedelta(days=5), 30, refunded=5),
        Order("x3", "X", start + timedelta(days=5), 7),
        Order("x4", "X", date(2024, 6, 20), 99, cancelled_at=date(2024, 6, 22)),
        Order("x5", "X", c, 40),  # the cutoff day is inside the window
        Order("x6", "X", c + timedelta(days=1), 1e6),  # after the cutoff: ignored
        Order("y0", "Y", date(2024, 2, 1), 15),  # no purchase in the window
        Order("z0", "Z", start + timedelta(days=1), 50),  # unknown at C - H: not a training row
    ])
    frame = build_training_frame(conn, c, h)
    assert list(frame.customer_id) == ["X", "Y"]
    x, y = row(frame, "X"), row(frame, "Y")
    assert x.feature_cutoff == pd.Timestamp(start)
    assert (x.order_count, x.total_net_spend, x.days_since_last_order) == (2, 30.0, 0)
    assert x.label_spend == pytest.approx(25 + 7 + 40)
    assert (x.label_orders, x.label_purchase_days, x.days_to_next_purchase) == (3, 2, 5)
    assert (y.label_spend, y.label_orders, y.label_purchase_days) == (0, 0, 0)
    assert pd.isna(y.days_to_next_purchase)
    # the feature half is exactly the scoring query at C - H
    scoring = build_scoring_frame(conn, start)
    pd.testing.assert_frame_equal(frame[scoring.columns], scoring)
    assert set(FEATURE_COLUMNS) <= set(frame.columns)


def test_materialization_is_idempotent(conn):
    build_staging(conn, random_orders(60, seed=7))
    first = materialize_features(conn, CUTOFF)
    snapshot = conn.execute("select * from features.customer_features order by customer_id").df()
    second = materialize_features(conn, CUTOFF)
    again = conn.execute("select * from features.customer_features order by customer_id").df()
    assert first == second == len(snapshot)
    assert snapshot.customer_id.is_unique
    pd.testing.assert_frame_equal(snapshot, again)
    assert set(snapshot.feature_cutoff) == {pd.Timestamp(CUTOFF)}
    pd.testing.assert_frame_equal(snapshot, build_features(conn, CUTOFF))


def test_feature_columns_are_numeric(conn):
    build_staging(conn, random_orders(30, seed=3))
    frame = build_features(conn, CUTOFF)
    assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in FEATURE_COLUMNS)
    with pytest.raises(TypeError):
        build_features(conn, "2024-06-30")


def messy_orders(n_customers: int, seed: int) -> list[Order]:
    """Orders that exercise every branch of the feature query: several orders on one day,
    cancellations days after the order (so cutoffs fall in between) or without a date, two
    refunds of one order on either side of a cutoff, refunds above the order total, lines
    without product or category, orders without lines, repeat products, guest orders."""
    rng = random.Random(seed)
    start, orders = date(2023, 1, 1), []
    for c in range(n_customers):
        customer = f"m{c:04d}" if rng.random() > 0.03 else None
        days = [start + timedelta(days=rng.randint(0, 500)) for _ in range(rng.randint(1, 9))]
        for k, day in enumerate(days + rng.sample(days, min(len(days), rng.randint(0, 2)))):
            gross = round(rng.uniform(0, 200), 2)
            u = rng.random()
            cancelled_at = day + timedelta(days=rng.randint(0, 20)) if u < 0.15 else None
            first = round(gross * rng.choice([0.2, 0.5, 1.0, 1.3]), 2) if rng.random() < 0.3 else 0.0
            second = ((round(gross * rng.choice([0.3, 0.8]), 2), day + timedelta(days=rng.randint(1, 60)))
                      if first and rng.random() < 0.5 else None)
            lines = [(rng.choice([f"P{rng.randint(1, 12)}", None]) if rng.random() < 0.1 else f"P{rng.randint(1, 12)}",
                      None if rng.random() < 0.1 else f"K{rng.randint(1, 4)}", rng.randint(1, 3))
                     for _ in range(rng.randint(0, 3))]
            orders.append(Order(f"m{c}-{k}", customer, day, gross, refunded=first,
                                discount=round(gross * rng.random() * 0.1, 2), cancelled_at=cancelled_at,
                                cancelled_unknown=0.15 <= u < 0.17, lines=lines, minute=rng.randint(0, 3),
                                refunded_on=day + timedelta(days=rng.randint(0, 30)), second_refund=second))
    return orders


def reference_sql(name: str) -> str:
    return (Path(__file__).parent / name).read_text(encoding="utf-8").strip().rstrip(";")


def calendar_only(frame: pd.DataFrame, silent_days: int = 0) -> pd.DataFrame:
    """The frame without its observed-time columns, after checking them: a store without a stretch
    lacking orders has them equal to the calendar columns they are taken from, but for the age's
    ``silent_days`` (a silence from the last order day to the cutoff, ``order_gaps.silent_tail``)."""
    for observed, calendar in OBSERVED_COLUMNS.items():
        taken = silent_days if observed == "observed_T_days" else 0
        assert (frame[observed] == frame[calendar] - taken).all(), observed
    return frame.drop(columns=list(OBSERVED_COLUMNS))


def test_matches_the_direct_formulation(conn):
    """The production query (precomputed order history + recomputed exceptions) gives exactly the
    rows of the direct formulation (a window and a distinct count at every cutoff), features and
    labels, at cutoffs that fall between orders and their cancellations or between two refunds."""
    orders = messy_orders(250, seed=11)
    build_staging(conn, orders)
    events = sorted({o.order_date for o in orders} | {o.cancelled_at for o in orders if o.cancelled_at}
                    | {o.second_refund[1] for o in orders if o.second_refund})
    rng = random.Random(5)
    cutoffs = rng.sample(events, 12) + [events[0], events[-1]]
    exceptions = 0
    for cutoff in cutoffs:
        reference = conn.execute(f"select * from ({reference_sql('reference_features.sql')}) order by customer_id",
                                 {"cutoff": cutoff}).df()
        # a cutoff weeks after the last order (a late refund's day): its silence is unobserved days
        tail = silent_tail(conn, cutoff)
        assert not order_gaps(conn, until=cutoff) or tail is not None and order_gaps(conn, until=cutoff) == [tail]
        pd.testing.assert_frame_equal(calendar_only(build_features(conn, cutoff), tail.days if tail else 0), reference,
                                      check_exact=False, rtol=1e-12)

        sql, params = training_query(cutoff, 45)
        reference_training = conn.execute(
            f"with features as (\n{reference_sql('reference_features.sql')}\n)\n{reference_sql('reference_labels.sql')}",
            params,
        ).df()
        # (the training query here is given no stretches: its observed columns are the calendar ones)
        pd.testing.assert_frame_equal(calendar_only(conn.execute(sql, params).df()), reference_training,
                                      check_exact=False, rtol=1e-12)
        exceptions += recomputed_at(conn, cutoff)[0]
    # the recomputed path was exercised, not just the precomputed one
    assert exceptions >= 10


def test_features_refuse_a_missing_or_stale_order_history(conn):
    build_staging(conn, hand_made())
    conn.execute("insert into staging.orders (order_id, customer_id, order_date, created_at, is_cancelled) "
                 "values ('late', 'A', date '2024-06-01', timestamp '2024-06-01', false)")
    with pytest.raises(StaleOrderHistory, match="build_order_history"):
        build_features(conn, CUTOFF)
    build_order_history(conn)
    assert row(build_features(conn, CUTOFF), "A").order_count == 5
    conn.execute("drop table staging.order_history")
    with pytest.raises(StaleOrderHistory, match="does not exist"):
        build_features(conn, CUTOFF)


def test_order_history_sequence_and_first_bought_credits(conn):
    build_staging(conn, hand_made())
    history = conn.execute("select * from staging.order_history order by customer_id, order_id").df()
    assert len(history) == 9  # every order with a customer; the guest order has none
    a = history[history.customer_id == "A"].set_index("order_id")
    # never-cancelled orders in (date, created_at) order; the cancelled a5 is outside the sequence
    assert list(a.purchase_seq[["a1", "a2", "a3", "a4", "a6"]]) == [1, 2, 3, 4, 5]
    assert pd.isna(a.purchase_seq["a5"]) and a.new_products["a5"] == 0
    assert list(a.days_since_prev_purchase[["a2", "a3", "a4"]]) == [60, 0, 101]
    # P1/Apparel first bought in a1; P2/Shoes on 03-01 credited to that day's first order a2 (P1 again in a3)
    assert list(a.new_products[["a1", "a2", "a3", "a4", "a6"]]) == [1, 1, 0, 1, 1]
    assert list(a.new_categories[["a1", "a2", "a3", "a4", "a6"]]) == [1, 1, 0, 0, 1]
    assert a.refunded_total["a4"] == 20 and a.last_refunded_on["a4"] == pd.Timestamp(2024, 6, 10)


def test_the_btyd_days_leave_out_a_stretch_without_orders_seen_at_the_cutoff(conn):
    """Thirty customers buying every third day from January to May 2024, but no order at all in March
    (a month missing from the export): at a cutoff after the orders resumed, the BTYD's recency and
    age (``OBSERVED_COLUMNS``) lose the stretch's days inside their spans, the calendar columns keep
    them; at a cutoff inside the stretch its days so far are taken out of every age (no order has
    closed it yet: a silence up to the cutoff, ``order_gaps.silent_tail``); the transactions'
    ``btyd.summarize`` gives the same weeks and keeps the calendar ones apart."""
    from clv_platform.models import btyd

    orders = []
    for c in range(30):
        day, k = date(2024, 1, 1) + timedelta(days=c % 10), 0
        while day <= date(2024, 5, 31):
            if not date(2024, 3, 1) <= day <= date(2024, 3, 31):
                orders.append(Order(f"o{c}-{k}", f"c{c}", day, 20.0))
            day, k = day + timedelta(days=3), k + 1
    orders += [Order("e1", "early", date(2024, 1, 5), 30.0), Order("e2", "early", date(2024, 2, 10), 30.0),
               Order("l1", "late", date(2024, 4, 10), 30.0)]
    build_staging(conn, orders)
    after = build_features(conn, date(2024, 5, 31)).set_index("customer_id")
    taken = after[["first_to_last_order_days", "T_days"]].to_numpy() - after[list(OBSERVED_COLUMNS)].to_numpy()
    taken = pd.DataFrame(taken, index=after.index, columns=["recency", "age"])
    assert taken.loc["c0"].tolist() == [31, 31]  # first 1 January, last 31 May: all of March inside both
    assert taken.loc["early"].tolist() == [0, 31]  # last purchase before March
    assert taken.loc["late"].tolist() == [0, 0]  # first purchase after it
    assert row(after.reset_index(), "early").T_days == 147 and row(after.reset_index(), "early").observed_T_days == 116
    inside = build_features(conn, date(2024, 3, 20))
    assert (inside["T_days"] - inside["observed_T_days"] == 20).all()  # 1-20 March
    assert (inside["observed_recency_days"] == inside["first_to_last_order_days"]).all()

    transactions = pd.DataFrame([(o.customer_id, o.order_date, o.gross) for o in orders],
                                columns=["customer_id", "order_date", "amount"])
    summary = btyd.summarize(transactions, date(2024, 5, 31)).reindex(after.index)
    assert (summary["recency"] * 7).round(9).tolist() == after["observed_recency_days"].astype(float).tolist()
    assert (summary["T"] * 7).round(9).tolist() == after["observed_T_days"].astype(float).tolist()
    assert (summary["calendar_T"] * 7).round(9).tolist() == after["T_days"].astype(float).tolist()
