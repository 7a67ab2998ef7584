"""How an order came in: the Shopify fields behind acquisition attribution.

A separate fragment of the orders query (appended to the order fields in ``shopify.py``), so the
attribution fields can change without touching the money and line-item fields. Shapes (Admin
GraphQL, 2025-01 and later):

* ``Order.customerJourneySummary`` (``CustomerJourneySummary``, nullable: no online session, e.g.
  POS or draft orders, or attribution not ready yet): ``customerOrderIndex``,
  ``daysToConversion``, ``firstVisit`` / ``lastVisit`` (``CustomerVisit``, nullable) with
  ``source`` (String!: "direct", "google", "facebook", "email", a domain, ...), ``sourceType``
  (``MarketingTactic`` enum, nullable: AD, NEWSLETTER, SEO, ...), ``landingPage``,
  ``referrerUrl`` and ``utmParameters`` (``UTMParameters``, nullable:
  ``source medium campaign content term``).
* ``Order.sourceName`` (String, nullable): the sales channel, e.g. "web", "pos",
  "shopify_draft_order" or an app id.
* ``Order.discountCodes`` ([String!]!): the codes applied to the order.

Staging keeps them for each customer's first order (``sql/staging/07_acquisition.sql``).
"""

_VISIT = "source sourceType landingPage referrerUrl utmParameters{source medium campaign content term}"

ACQUISITION_FIELDS = (
    "sourceName discountCodes "
    f"customerJourneySummary{{customerOrderIndex daysToConversion firstVisit{{{_VISIT}}} lastVisit{{{_VISIT}}}}}"
)
"""Appended to the order fields of the page and bulk queries."""

ACQUISITION_KEYS = ("sourceName", "discountCodes", "customerJourneySummary")
"""Their top-level keys, appended to ``shopify.ORDER_KEYS`` (contract order)."""
