"""A Shopify orders table exported from a warehouse (Fivetran's connector `order` table, dbt_shopify's
`shopify__orders` model) is read with Shopify's meanings, not as any order-level file: the column names
are the dbt model's and the connector's (fivetran/dbt_shopify models/shopify.yml,
fivetran/dbt_shopify_source get_order_columns); the mock file pymc-marketing ships as
`data/fivetran_examples/shopify_orders_schema.csv` has this header and unions two shops."""

import duckdb
import pytest

from clv_platform_tests.ingestion.test_file_semantics import _stage
from clv_platform_tests.inbox import import_file

# the dbt model's columns that matter here, in its order, with some it has that are not read
DBT_HEADER = ("order_id,user_id,total_discounts,total_price,total_tax,subtotal_price,has_taxes_included,name,"
              "number,order_number,created_timestamp,cancelled_timestamp,processed_timestamp,updated_timestamp,"
              "currency,customer_id,email,financial_status,billing_address_country,presentment_currency,"
              "is_test_order,is_deleted,_fivetran_synced,source_relation,refund_subtotal,order_adjusted_total,"
              "customer_order_seq_number,new_vs_repeat")


def _dbt_row(order_id, customer, email, processed, subtotal, status="paid", *, created=None, cancelled="",
             tax="0.00", taxes_included="false", test="false", deleted="false", refund="0.0", shop="shopify_us"):
    return ",".join(str(v) for v in (
        order_id, "", "0.0", subtotal, tax, subtotal, taxes_included, f"#{order_id}", order_id, order_id,
        created or processed, cancelled, processed, processed, "USD", customer, email, status, "United States",
        "USD", test, deleted, processed, shop, refund, subtotal, 1, "new"))


def test_a_dbt_shopify_orders_table_reads_with_shopifys_meanings(data_env):
    """Every row kind of a real store's `shopify__orders`: the order day is `processed_timestamp` in
    UTC read on the shop's calendar (an evening order in New York is 01:30 UTC the next day), an order
    imported from another platform keeps its own day (processed years before it was created), a guest
    checkout with a customer's e-mail is that customer's, test orders and deleted rows are not orders,
    a cancelled order is kept as cancelled with no revenue, refunds and the taxes of a taxes-included
    order come off, a `refunded` order gave all of it back, a float-looking customer id is the id."""
    rows = [
        _dbt_row(5001, "6543210987654.0", "Ann@Example.com", "2024-03-11 01:30:00", "100.00"),
        _dbt_row(5002, "", "ann@example.com", "2024-03-12 15:00:00", "40.00"),  # guest checkout, Ann's e-mail
        _dbt_row(5003, "", "new@example.com", "2024-03-12 16:00:00", "25.00"),  # a guest never seen with an id
        _dbt_row(5004, "", "", "2024-03-12 17:00:00", "30.00"),  # a POS sale to nobody
        _dbt_row(5005, "6543210987654", "ann@example.com", "2024-03-13 12:00:00", "55.00", test="true"),
        _dbt_row(5006, "6543210987655", "bo@example.com", "2024-03-13 12:00:00", "60.00", deleted="True"),
        _dbt_row(5007, "6543210987655", "bo@example.com", "2024-03-14 12:00:00", "70.00", "voided",
                 cancelled="2024-03-14 13:00:00"),
        _dbt_row(5008, "6543210987655", "bo@example.com", "2024-03-15 12:00:00", "80.00", "partially_refunded",
                 refund="30.0"),
        _dbt_row(5009, "6543210987655", "bo@example.com", "2024-03-16 12:00:00", "120.00", tax="20.00",
                 taxes_included="true"),
        _dbt_row(5010, "6543210987655", "bo@example.com", "2021-06-01 12:00:00", "90.00",
                 created="2024-03-01 09:00:00"),
        # fully refunded by an amount without refunded lines: dbt's refund_subtotal is 0, the status says all
        _dbt_row(5011, "6543210987655", "bo@example.com", "2024-03-17 12:00:00", "45.00", "refunded"),
        # no processing time: the creation time, as the API path reads coalesce(processedAt, createdAt)
        _dbt_row(5012, "6543210987655", "bo@example.com", "", "15.00", created="2024-03-18 03:00:00"),
    ]
    result, db = import_file(data_env, "shopify__orders.csv", "\n".join([DBT_HEADER, *rows]) + "\n")
    assert result.success
    with duckdb.connect(str(db)) as conn:
        formats = {f for (f,) in conn.execute("select distinct file_format from raw.file_transactions").fetchall()}
    assert formats == {"shopify_table"}
    _, rejected, net = _stage(db, "America/New_York")
    assert sorted(rejected.values()) == ["deleted in Shopify (the table marks the row deleted)",
                                         "missing customer id", "test order"]
    assert net == {"import:5001": 100.0, "import:5002": 40.0, "import:5003": 25.0, "import:5007": 0.0,
                   "import:5008": 50.0, "import:5009": 100.0, "import:5010": 90.0, "import:5011": 0.0,
                   "import:5012": 15.0}
    with duckdb.connect(str(db)) as conn:
        orders = {o: (c, str(d), e, cancelled) for o, c, d, e, cancelled in conn.execute(
            "select order_id, customer_id, order_date, email, is_cancelled from staging.orders").fetchall()}
    assert orders["import:5001"] == ("import:6543210987654", "2024-03-10", "ann@example.com", False)
    assert orders["import:5002"][0] == "import:6543210987654"  # the guest checkout is Ann's
    assert orders["import:5003"][0] == "import:new@example.com"
    assert orders["import:5007"][3] is True
    assert orders["import:5010"][1] == "2021-06-01"
    assert orders["import:5012"][1] == "2024-03-17"  # 03:00 UTC is the evening before in New York


def test_a_table_of_several_shops_is_refused(data_env):
    """dbt_shopify unions connectors into one table with `source_relation` (pymc-marketing's mock of the
    model holds `shopify.eu` and `shopify.us` with the same customer ids): one database holds one store."""
    rows = [_dbt_row(1, "11", "a@x.com", "2024-01-01 10:00:00", "10.00", shop="shopify_eu"),
            _dbt_row(1, "11", "a@x.com", "2024-01-02 10:00:00", "12.00", shop="shopify_us")]
    result, _ = import_file(data_env, "orders.csv", "\n".join([DBT_HEADER, *rows]) + "\n")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    message = failure.user_failure_data.description if failure.user_failure_data else failure.error.message
    assert "2 shops" in message and "shopify_eu" in message and "shopify_us" in message


def test_an_airbyte_stream_of_several_shops_is_refused(data_env):
    """Airbyte's Shopify orders carry the shop they are from in `shop_url`."""
    text = ("id,email,processed_at,currency,subtotal_price,financial_status,customer,shop_url\n"
            '1,a@x.com,2024-01-01T10:00:00Z,USD,10.00,paid,"{""id"": 11}",a.myshopify.com\n'
            '1,a@x.com,2024-01-02T10:00:00Z,USD,12.00,paid,"{""id"": 11}",b.myshopify.com\n')
    result, _ = import_file(data_env, "orders.csv", text)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data
    message = failure.user_failure_data.description if failure.user_failure_data else failure.error.message
    assert "2 shops" in message and "a.myshopify.com" in message and "b.myshopify.com" in message


@pytest.mark.parametrize("refunded_status, net", [("refunded", 0.0), ("paid", 64.5)])
def test_the_connectors_own_order_table_reads_too(data_env, refunded_status, net):
    """Fivetran's `order` table before dbt: `id`, `processed_at`, `test`, `_fivetran_deleted`, and no
    refund columns (refunds are in its `refund` tables), so a `refunded` order gave all of it back."""
    text = ("ID,CUSTOMER_ID,EMAIL,CREATED_AT,PROCESSED_AT,SUBTOTAL_PRICE,TOTAL_TAX,TAXES_INCLUDED,CURRENCY,"
            "FINANCIAL_STATUS,CANCELLED_AT,TEST,_FIVETRAN_DELETED,_FIVETRAN_SYNCED,BUYER_ACCEPTS_MARKETING\n"
            f"4400001,88,c@x.com,2024-05-02 04:00:00,2024-05-02 04:00:00,64.50,0,false,GBP,{refunded_status},,"
            "false,false,2024-05-03 00:00:00,true\n"
            "4400002,88,c@x.com,2024-05-03 04:00:00,2024-05-03 04:00:00,10.00,0,false,GBP,paid,,true,false,"
            "2024-05-03 00:00:00,false\n")
    result, db = import_file(data_env, "order.csv", text)
    assert result.success
    _, rejected, orders = _stage(db, "Europe/London")
    assert list(rejected.values()) == ["test order"]
    assert orders == {"import:4400001": net}
    with duckdb.connect(str(db)) as conn:
        # the consent given with the customer's newest accepted order (the test order's is not theirs)
        consent = conn.execute("select customer_id, email, email_consent, can_receive_email_marketing "
                               "from staging.customers").fetchall()
    assert consent == [("import:88", "c@x.com", "SUBSCRIBED", True)]


def test_airbytes_shopify_orders_stream_reads_its_customer_and_refunds_objects(data_env):
    """Airbyte's Shopify source writes the REST Admin API's order with its `customer` and `refunds`
    objects as JSON, times with the shop's offset, and emits deleted orders with `deleted_at`: the
    customer is the object's id, refunds are the subtotals of the refunded line items, each booked on
    its own day."""
    import csv
    import io
    import json

    header = ["_airbyte_raw_id", "_airbyte_extracted_at", "id", "name", "email", "created_at", "processed_at",
              "currency", "subtotal_price", "total_tax", "taxes_included", "financial_status", "cancelled_at", "test",
              "customer", "refunds", "deleted_at", "shop_url"]
    ann = json.dumps({"id": 6543210987654, "email": "ann@x.com", "orders_count": 3, "total_spent": "150.00"})
    refunds = json.dumps([{"id": 901, "created_at": "2024-03-20T10:00:00-04:00",
                           "refund_line_items": [{"quantity": 1, "subtotal": "12.50", "total_tax": 1.0},
                                                 {"quantity": 1, "subtotal": 7.5, "total_tax": 0.6}]},
                          # no id and no time (a hand-edited export): booked on the order's own day
                          {"refund_line_items": [{"quantity": 1, "subtotal": "5.00"}]}])
    rows = [
        ["r1", "2024-04-01", 820001, "#1001", "ann@x.com", "2024-03-10T21:15:00-05:00", "2024-03-10T21:15:00-05:00",
         "USD", "50.00", "0.00", "false", "paid", "", "false", ann, "[]", "", "x.myshopify.com"],
        ["r2", "2024-04-01", 820002, "#1002", "ann@x.com", "2024-03-12T10:00:00-04:00", "2024-03-12T10:00:00-04:00",
         "USD", "60.00", "0.00", "false", "partially_refunded", "", "false", ann, refunds, "", "x.myshopify.com"],
        ["r3", "2024-04-01", 820003, "#1003", "ann@x.com", "2024-03-13T10:00:00-04:00", "2024-03-13T10:00:00-04:00",
         "USD", "70.00", "0.00", "false", "paid", "", "false", ann, "[]", "2024-03-14T09:00:00-04:00",
         "x.myshopify.com"],
        ["r4", "2024-04-01", 820004, "#1004", "guest@x.com", "2024-03-14T10:00:00-04:00", "2024-03-14T10:00:00-04:00",
         "USD", "30.00", "0.00", "false", "paid", "", "false", "", "[]", "", "x.myshopify.com"],
        ["r5", "2024-04-01", 820005, "#1005", "ann@x.com", "2024-03-15T10:00:00-04:00", "2024-03-15T10:00:00-04:00",
         "USD", "80.00", "0.00", "false", "partially_refunded", "", "false", ann, "[{broken", "", "x.myshopify.com"],
        # refunded in full: one line back (30) and the rest as an amount without lines, the same day
        ["r6", "2024-04-01", 820006, "#1006", "ann@x.com", "2024-03-16T10:00:00-04:00", "2024-03-16T10:00:00-04:00",
         "USD", "90.00", "0.00", "false", "refunded", "", "false", ann,
         json.dumps([{"id": 902, "created_at": "2024-03-22T23:30:00-04:00",
                      "refund_line_items": [{"quantity": 1, "subtotal": "30.00"}]}]), "", "x.myshopify.com"],
    ]
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    result, db = import_file(data_env, "airbyte_orders.csv", out.getvalue())
    assert result.success
    _, rejected, net = _stage(db, "America/New_York")
    assert sorted(rejected.values()) == ["deleted in Shopify (the table marks the row deleted)",
                                         "unparseable refunded amount: [{broken"]
    assert net == {"import:820001": 50.0, "import:820002": 35.0, "import:820004": 30.0, "import:820006": 0.0}
    with duckdb.connect(str(db)) as conn:
        orders = dict(conn.execute("select order_id, customer_id || ' ' || order_date from staging.orders").fetchall())
        refunds = conn.execute("select refund_id, customer_id, refunded_on, amount from staging.refunds "
                               "order by refund_id").fetchall()
    # each refund on its own New York day (point in time: a cutoff before 20 March does not see it)
    assert [(r, c, str(d), float(a)) for r, c, d, a in refunds] == [
        ("import:820002#refund:#2", "import:6543210987654", "2024-03-12", 5.0),
        ("import:820002#refund:901", "import:6543210987654", "2024-03-20", 20.0),
        # the part of a refunded order its refunded lines do not hold, on the day of its last refund
        ("import:820006#refund:902", "import:6543210987654", "2024-03-22", 30.0),
        ("import:820006#refunded", "import:6543210987654", "2024-03-22", 60.0)]
    assert orders == {"import:820001": "import:6543210987654 2024-03-10",
                      "import:820002": "import:6543210987654 2024-03-12",
                      "import:820004": "import:guest@x.com 2024-03-14",
                      "import:820006": "import:6543210987654 2024-03-16"}


def test_the_graphql_connectors_order_table_reads_its_shop_amounts(data_env):
    """Fivetran's Shopify connector on the GraphQL Admin API writes money sets as `<field>_set_shop_amount`
    beside `_set_pres_amount` (the customer's currency) and the status as `display_financial_status`
    (PAID, PARTIALLY_REFUNDED): the shop amount is the revenue, the presentment amount is not read."""
    text = ("id,customer_id,email,created_at,processed_at,currency_code,presentment_currency_code,"
            "subtotal_price_set_pres_amount,subtotal_price_set_shop_amount,total_tax_set_shop_amount,taxes_included,"
            "display_financial_status,cancelled_at,test,_fivetran_deleted\n"
            "5550001,901,d@x.com,2024-06-01 10:00:00,2024-06-01 10:00:00,EUR,USD,108.00,100.00,19.00,true,PAID,,"
            "false,false\n"
            "5550002,901,d@x.com,2024-06-02 10:00:00,2024-06-02 10:00:00,EUR,USD,54.00,50.00,0,false,VOIDED,,"
            "false,false\n")
    result, db = import_file(data_env, "order.csv", text)
    assert result.success
    _, rejected, orders = _stage(db, "Europe/Berlin")
    assert rejected == {}
    assert orders == {"import:5550001": 81.0, "import:5550002": 0.0}
