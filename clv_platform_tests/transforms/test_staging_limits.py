"""Staging on Shopify orders with values that overflow a cast or a product: rejected with a reason, never a failed build.

Issue 17: one amount such as 9999999999999999.99 (a valid DECIMAL(18,2)) or a quantity of
2147483647 used to fail staging, and every later refresh with it, until the raw row was
edited by hand. The limits are in data_contracts.md ("Value limits").
"""

import copy

import duckdb
import pytest

from clv_platform.transforms.staging import build_staging
from clv_platform_tests.transforms.test_staging import load, money, order


def with_line(node: dict, quantity, price: str, discount: str = "0.00") -> dict:
    node = copy.deepcopy(node)
    node["lineItems"]["nodes"][0].update(
        quantity=quantity, originalUnitPriceSet=money(price), totalDiscountSet=money(discount)
    )
    return node


def with_discounts(node: dict, amount: str) -> dict:
    node = copy.deepcopy(node)
    node["totalDiscountsSet"] = money(amount)
    return node


BAD = {
    # order id -> (raw node, expected reason)
    101: (order(101, total="9999999999999999.99"), "amount out of range"),
    102: (order(102, total="99999999999999999999.99"), "amount out of range"),  # too long even for DECIMAL(18,2)
    103: (with_line(order(103), 2147483647, "99999999.99"), "quantity out of range"),
    104: (with_line(order(104), "99999999999", "1.00"), "quantity out of range"),  # beyond INTEGER
    105: (with_line(order(105), 1000, "999999999999.99"), "amount out of range"),  # each in range, product not
    106: (order(106, refunds=("9000000000000000.00", "9000000000000000.00")), "amount out of range"),
    107: (with_discounts(order(107), "-99999999999999999999"), "amount out of range"),
    108: (with_line(order(108), 1, "1e30"), "amount out of range"),
    109: (order(109, refunds=("600000000000.00", "600000000000.00")), "amount out of range"),  # the sum is not
}


@pytest.fixture
def built(tmp_path):
    conn = duckdb.connect(str(tmp_path / "limits.duckdb"))
    good = [
        order(1),
        # at the limits: accepted, and their sums (customer, product) still fit
        with_line(order(2, total="999999999999.99"), 1, "999999999999.99"),
        with_line(order(3, total="999999999999.99"), 1000000, "0.99"),
    ]
    load(conn, good + [node for node, _ in BAD.values()])
    result = build_staging(conn)
    yield conn, result
    conn.close()


def test_each_overflowing_value_is_a_rejected_row_with_its_reason(built):
    conn, result = built
    rejected = dict(conn.execute(
        "select record_id, reason from staging.rejected_rows where source_table = 'raw.shopify_orders'"
    ).fetchall())
    assert rejected == {f"gid://shopify/Order/{n}": reason for n, (_, reason) in BAD.items()}
    assert all(r.balanced for r in result.reconciliation)


def test_staging_succeeds_and_keeps_the_valid_orders_exactly(built):
    conn, _ = built
    orders = dict(conn.execute("select order_id, gross_revenue from staging.orders").fetchall())
    assert set(orders) == {f"gid://shopify/Order/{n}" for n in (1, 2, 3)}
    assert str(orders["gid://shopify/Order/2"]) == "999999999999.99"
    lines = dict(conn.execute("select order_id, line_revenue from staging.order_lines").fetchall())
    assert str(lines["gid://shopify/Order/3"]) == "990000.00"
    assert str(lines["gid://shopify/Order/2"]) == "999999999999.99"
    revenue = conn.execute("select revenue from staging.products").fetchone()[0]
    assert str(revenue) == "1000000990059.99"


def test_a_later_refresh_with_the_bad_rows_still_builds(built):
    conn, _ = built
    again = build_staging(conn)  # the bad rows are still in raw: the rebuild must not be blocked
    assert again.reject_reasons.get("amount out of range") == 7
    assert again.reject_reasons.get("quantity out of range") == 2
