"""Every Shopify answer is checked before it is trusted (issue 17).

A connection without `nodes`/`pageInfo` is not "the last page", a bulk file must hold
`objectCount` lines, and a partial bulk result is never loaded. A malformed answer that
goes away on retry gives exactly the source's records; one that persists raises.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from clv_platform.resources.http import ConnectorError, RetriesExhaustedError
from clv_platform.resources.shopify import ShopifyResource
from clv_platform_tests.fake_api import BULK_DOWNLOAD, SHOPIFY, checksum

START = datetime(2024, 12, 1)
END = datetime(2025, 3, 1)


def _copy(resource: ShopifyResource, **changes) -> ShopifyResource:
    return ShopifyResource(**{**resource.model_dump(), **changes})


def test_orders_null_page_is_retried_not_taken_as_the_last_page(fake, shopify, order_nodes, log):
    fake.fault(SHOPIFY, "null_connection", op="orders", at=[4])

    got = list(shopify.iter_orders(START, END, log))

    assert checksum(got) == checksum(order_nodes)
    pages = fake.requests_for(SHOPIFY, op="orders")
    assert pages[3].faults and pages[4].body["variables"]["after"] == pages[3].body["variables"]["after"]


def test_orders_null_page_that_persists_raises_instead_of_ending_the_fetch(fake, shopify, log):
    fake.fault(SHOPIFY, "null_connection", op="orders", times=None)
    got = []
    with pytest.raises(RetriesExhaustedError, match="orders page: malformed response"):
        for node in shopify.iter_orders(START, END, log):
            got.append(node)
    assert got == []


def test_a_later_null_page_raises_after_the_earlier_pages(fake, shopify, log):
    first_pages = 3
    for number in range(first_pages + 1, first_pages + 1 + shopify.max_retries + 1):
        fake.fault(SHOPIFY, "null_connection", op="orders", at=[number])
    with pytest.raises(RetriesExhaustedError):
        list(shopify.iter_orders(START, END, log))


def test_null_order_in_a_line_item_follow_up_is_retried(fake, shopify, order_nodes, log):
    fake.fault(SHOPIFY, "null_connection", op="line_items", at=[1])
    assert checksum(list(shopify.iter_orders(START, END, log))) == checksum(order_nodes)


def test_cut_bulk_download_without_content_length_is_downloaded_again(fake, shopify, order_nodes, log):
    fake.fault(BULK_DOWNLOAD, "truncated", times=1, mode="cut_lines", fraction=0.6)

    got = list(shopify.bulk_orders(START, log))

    assert checksum(got) == checksum(order_nodes)
    downloads = fake.requests_for(BULK_DOWNLOAD)
    assert len(downloads) == 2 and downloads[0].faults


def test_cut_bulk_download_that_persists_fails(fake, shopify, log, caplog):
    fake.fault(BULK_DOWNLOAD, "truncated", times=None, mode="cut_lines", fraction=0.6)
    got = []
    with pytest.raises(RetriesExhaustedError, match="objectCount"):
        for node in shopify.bulk_orders(START, log):
            got.append(node)
    assert got == []  # nothing of the cut file was yielded


def test_partial_bulk_result_is_never_loaded(fake, shopify, order_nodes, log):
    fake.fault(SHOPIFY, "bulk_partial", times=1)
    got = list(shopify.bulk_orders(START, log))  # restarted once, complete the second time
    assert checksum(got) == checksum(order_nodes)
    assert not any("partial" in r.path for r in fake.requests_for(BULK_DOWNLOAD))

    fake.fault(SHOPIFY, "bulk_partial", times=1, status="COMPLETED")
    with pytest.raises(ConnectorError, match="partial result"):
        list(_copy(shopify, bulk_max_restarts=0).bulk_orders(START, log))
    assert not any("partial" in r.path for r in fake.requests_for(BULK_DOWNLOAD))
