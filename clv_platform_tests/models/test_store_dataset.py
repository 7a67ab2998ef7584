"""The backtest on a store the platform built: its staging tables read as the transactions frame."""

import duckdb
import pytest

from clv_platform.models import datasets
from clv_platform.transforms.staging import build_staging
from clv_platform_tests.demo_cache import demo_database
from clv_platform_tests.inbox import import_file

EXPORT = """\
    InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
    536365,85123A,HEART HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom
    536366,22633,HAND WARMER,6,12/1/2010 8:28,1.85,17851.0,France
    536370,22700,TEA SET,2,12/2/2010 10:00,10.00,17851.0,France
    C536371,22633,HAND WARMER,-6,12/3/2010 9:00,1.85,17851.0,France
    536372,22700,TEA SET,1,12/4/2010 10:00,10.00,,France
"""


@pytest.fixture(autouse=True)
def _store_currency(monkeypatch):
    monkeypatch.setenv("CLV_FILE_CURRENCY", "GBP")


def _files_store(data_env) -> str:
    result, db = import_file(data_env, "retail.csv", EXPORT)
    assert result.success
    with duckdb.connect(str(db)) as conn:
        build_staging(conn, store_timezone="UTC")
    return str(db)


def test_a_files_store_is_read_as_the_import_read_it(data_env):
    loaded = datasets.load_dataset(_files_store(data_env))
    frame = loaded.transactions
    assert list(frame.columns) == [*datasets.TRANSACTION_COLUMNS, datasets.ORDER_ID]
    rows = {(r.order_id, r.customer_id, str(r.order_date.date()), round(r.amount, 2)) for r in frame.itertuples()}
    # the float-looking ids are the import's keys; the credit note is a return of the order it
    # names, on its own day
    assert rows == {("import:536365", "import:17850", "2010-12-01", 15.3),
                    ("import:536366", "import:17851", "2010-12-01", 11.1),
                    ("import:536370", "import:17851", "2010-12-02", 20.0),
                    ("import:536366", "import:17851", "2010-12-03", -11.1)}
    # the row without a customer was rejected by the import: counted with its reason, not silently gone
    with duckdb.connect(str(data_env / "clv.duckdb"), read_only=True) as conn:
        (reason,) = conn.execute("select reason from staging.rejected_rows").fetchone()
    assert "customer" in reason and loaded.dropped == {f"rejected by the cleaning rules: {reason}": 1}
    assert (loaded.calibration_end, loaded.holdout_end) == (None, None)
    purchases, returns = datasets.split_returns(frame)
    # booked to the hand warmers' order, not to the customer's latest purchase before it (the tea set)
    booked = purchases.set_index("purchase_id").loc[returns["purchase_id"], "order_id"].tolist()
    assert booked == ["import:536366"]
    net = datasets.net_purchases(frame).set_index("order_id")["amount"]
    assert net.to_dict() == pytest.approx({"import:536365": 15.3, "import:536366": 0.0, "import:536370": 20.0})


def test_a_shopify_shaped_store_keeps_the_features_purchase_rule(tmp_path):
    # the demo store: guests, cancellations, partial and full refunds, a west-of-UTC shop
    db = demo_database(tmp_path / "demo.duckdb", 600, seed=11)
    loaded = datasets.load_dataset(db)
    frame = loaded.transactions
    with duckdb.connect(str(db), read_only=True) as conn:
        purchases = conn.execute("""
            select order_id, gross_revenue, is_cancelled, cancelled_on from staging.order_history
            where not (is_cancelled and coalesce(cancelled_on <= order_date, true))""").df()
        refunds = conn.execute("select order_id, amount from staging.refunds where amount > 0").df()
        guests, same_day = conn.execute("""select count(*) filter (where customer_id is null),
            count(*) filter (where customer_id is not null and is_cancelled and coalesce(cancelled_on <= order_date, true))
            from staging.orders""").fetchone()
    positive = frame[frame["amount"] >= 0]
    assert sorted(positive["order_id"]) == sorted(purchases["order_id"].astype(str)) and positive["order_id"].is_unique
    assert positive["amount"].sum() == pytest.approx(purchases["gross_revenue"].astype(float).sum())
    later = purchases[purchases["cancelled_on"].notna() & purchases["is_cancelled"]]
    kept = refunds[refunds["order_id"].isin(purchases["order_id"])]
    negative = frame[frame["amount"] < 0]
    assert len(negative) == len(kept) + len(later)
    assert -negative["amount"].sum() == pytest.approx(kept["amount"].astype(float).sum()
                                                      + later["gross_revenue"].astype(float).sum())
    assert guests > 0 and loaded.dropped["guest order (no customer)"] == guests
    assert loaded.dropped.get("order cancelled on its own day", 0) == same_day
    # the cleaning rules' rejections by reason (test orders, ...), but not the superseded versions
    # of orders whose newest version is in
    assert loaded.dropped["rejected by the cleaning rules: test order"] > 0
    assert not any("superseded" in reason for reason in loaded.dropped)
    # every return is booked to its own order, none to another or to none
    bought, returns = datasets.split_returns(frame)
    assert (returns["purchase_id"] >= 0).all()
    owner = bought.set_index("purchase_id")["order_id"]
    assert (owner.loc[returns["purchase_id"]].to_numpy() == returns["order_id"].to_numpy()).all()


def test_a_store_without_staging_is_refused_in_a_sentence(tmp_path):
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    with pytest.raises(ValueError, match="build its staging tables first"):
        datasets.load_dataset(db)
