"""raw → staging: parse, validate, de-duplicate and resolve customers, all in DuckDB SQL.

Two ways to the same tables, each inside one transaction (so readers never see half a build,
and every raw record is proven accepted or rejected with a reason):

* a **full build** parses every raw row with the scripts of `sql/staging/`;
* a **merge** (the default once a full build has run) parses only the raw order versions and
  profiles that arrived since the last build, re-ranks the versions of the orders and profiles
  they touch, re-resolves the identities they change, and replaces the staging rows of exactly
  the orders, products and customers affected. It runs the same SQL statements as the full
  build, each over the affected subset (`_scoped`), so the two cannot drift apart; a test
  builds one store both ways and compares every table row for row.

The build keeps its parsed versions and identity tables in the `staging_build` schema, and a
high-water mark of the raw tables in `staging_build.build_state`. A merge falls back to a full
build (and says why) when the raw rows it already read changed (a re-fetched Shopify partition
or Klaviyo profile deletes and re-inserts raw rows), when imported files changed, or when the
shop's currency, time zone or revenue basis changed.
"""

from __future__ import annotations

import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from clv_platform.core.sql import sql_code_version, transaction
from clv_platform.ingestion.raw_tables import ensure_raw_tables
from clv_platform.resources.storage import read_sql, run_script, split_statements, table_exists
from clv_platform.settings import FILE_DATE_ORDERS

STAGING_SCRIPTS = (
    "00_value_limits.sql",
    "00_payload_macros.sql",
    "01_order_versions.sql",
    "01_rank_order_versions.sql",
    "02_profile_versions.sql",
    "02_rank_profile_versions.sql",
    "03_file_rows.sql",
    "04_identity.sql",
    "05_staging_tables.sql",
    "06_order_history.sql",
    "07_acquisition.sql",
)

RULES_VERSION = sql_code_version("clv_platform.transforms", *(f"sql/staging/{s}" for s in STAGING_SCRIPTS))
"""A hash of the staging scripts' text: the rules a build applied. A merge only re-parses the raw
rows that changed, so after an upgrade that changed a rule the untouched rows would keep the old
one; a build whose stored version differs rebuilds everything instead (and the Dagster
`code_version` of the staging assets is this too, so the UI marks them stale)."""

STAGING_TABLES = (
    "orders", "order_lines", "customers", "products", "refunds", "returns", "rejected_rows", "order_history",
    "customer_acquisition",
)

BUILD_SCHEMA = "staging_build"
"""Parsed versions and identity tables of the last build, kept for the next merge. They are
ordinary tables, not temp tables, because DuckDB writes a large uncommitted table of a file
database to disk as it fills, while an uncommitted temp table must stay in memory: with temp
tables the build needed > 4 GB at a million customers."""

BUILD_VIEWS = (
    "_profile_versions_judged", "_accepted_orders", "_accepted_profiles", "_order_versions_checked",
    "_profile_versions_checked", "_order_versions_rank_input", "_profile_versions_rank_input",
    "_raw_orders_scope", "_raw_profiles_scope",
)

STATE_TABLE = f"{BUILD_SCHEMA}.build_state"

LOAD_BOOKKEEPING_COLUMNS = {"rejected_rows": ("rejected_at",)}
"""Columns that say when a row was written, not what it says: a merge keeps the time of the
build that first rejected a row. The full-vs-merge comparison ignores exactly these."""

_CURRENCY = re.compile(r"^[A-Z]{3}$")

REVENUE_BASES = ("net_sales", "total_price")
REVENUE_CONFIG = Path(__file__).with_name("revenue.toml")


def revenue_basis(path: Path | None = None) -> str:
    """The configured meaning of revenue (`revenue.toml` next to this module): net_sales or total_price."""
    value = tomllib.loads(Path(path or REVENUE_CONFIG).read_text(encoding="utf-8")).get("revenue_basis", "net_sales")
    if value not in REVENUE_BASES:
        raise ValueError(f"revenue_basis in {path or REVENUE_CONFIG} must be one of {REVENUE_BASES}, got {value!r}")
    return value


@dataclass(frozen=True)
class Reconciliation:
    """Rows in vs rows accepted + rejected for one raw table."""

    source_table: str
    rows_in: int
    accepted: int
    rejected: int

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.rejected


@dataclass
class StagingResult:
    shop_currency: str
    shop_timezone: str = "UTC"
    revenue_basis: str = "net_sales"
    row_counts: dict[str, int] = field(default_factory=dict)
    reconciliation: list[Reconciliation] = field(default_factory=list)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    script_seconds: dict[str, float] = field(default_factory=dict)
    mode: str = "full"
    """"full" or "merge"."""
    full_reason: str | None = None
    """Why a build that could have merged rebuilt everything (None for a merge or a requested full build)."""
    load_reconciliation: list[Reconciliation] = field(default_factory=list)
    """A merge's new raw rows per table: in = accepted + rejected (of this load only)."""
    merged: dict[str, int] = field(default_factory=dict)
    """A merge's affected keys: orders, profiles, orders re-resolved, customers, customers whose
    history / acquisition row was rebuilt, products; `history_rows_replaced`, the
    `order_history` rows that changed (deleted and written again); `customer_rows_replaced`, the same
    for `staging.customers`; and `products_recounted`, the touched products aggregated from all their
    lines rather than adjusted by the replaced ones."""


def infer_shop_currency(conn: duckdb.DuckDBPyConnection, default: str = "USD") -> str:
    """The shop currency is whatever `shopMoney` is most often in, else the most frequent currency
    of the imported file rows (column or store setting, recorded per row); fall back to `default`."""
    value = conn.execute(
        """
        select coalesce(
            (select mode(json_extract_string(payload, '$.totalPriceSet.shopMoney.currencyCode'))
             from raw.shopify_orders),
            (select mode(nullif(upper(trim(currency)), '')) from raw.file_transactions)
        )
        """
    ).fetchone()[0]
    return value or default


def stored_shop(conn: duckdb.DuckDBPyConnection) -> tuple[str | None, str | None]:
    """(currency, IANA time zone) of the newest `raw.shopify_shop` row of the loaded source, if any."""
    row = conn.execute(
        """
        select currency_code, iana_timezone from raw.shopify_shop
        where source in (select source from raw.shopify_orders limit 1)
           or not exists (select 1 from raw.shopify_orders)
        order by fetched_at desc limit 1
        """
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def build_staging(
    conn: duckdb.DuckDBPyConnection,
    shop_currency: str | None = None,
    shop_timezone: str | None = None,
    basis: str | None = None,
    store_timezone: str | None = None,
    *,
    full_rebuild: bool = False,
    date_order: str = "auto",
) -> StagingResult:
    """Bring every staging table up to date with raw in one transaction and reconcile the counts.

    Merges the raw rows that arrived since the last build when it can (see the module docstring),
    else (or with `full_rebuild`) rebuilds everything. The shop currency and time zone come from
    `raw.shopify_shop` (what Shopify said), else the currency is inferred from the orders and the
    time zone is the store setting (`store_timezone`, e.g. for a files-only store), else UTC.
    Order days of every source are calendar days in that time zone. `date_order` reads the slash
    dates of a file whose own dates cannot tell (store.toml [files] date_order). Raises if any raw
    table does not balance: silently losing rows is worse than failing.
    """
    ensure_raw_tables(conn)
    stored_currency, stored_timezone = stored_shop(conn)
    currency = shop_currency or stored_currency or infer_shop_currency(conn)
    if not _CURRENCY.match(currency):
        raise ValueError(f"shop currency must be a 3-letter ISO code, got {currency!r}")
    timezone = shop_timezone or stored_timezone or store_timezone or "UTC"
    try:
        conn.execute("select timezone(?, timestamptz '2000-01-01 00:00:00+00')", [timezone])
    except duckdb.Error as exc:
        raise ValueError(f"shop time zone {timezone!r} is not an IANA time zone DuckDB knows: {exc}") from None
    basis = basis or revenue_basis()
    if basis not in REVENUE_BASES:
        raise ValueError(f"revenue basis must be one of {REVENUE_BASES}, got {basis!r}")
    if date_order not in FILE_DATE_ORDERS:
        raise ValueError(f"date order must be one of {', '.join(FILE_DATE_ORDERS)}, got {date_order!r}")
    params = {"shop_currency": currency, "shop_timezone": timezone, "store_timezone": timezone,
              "revenue_basis": basis, "file_date_order": date_order}
    result = StagingResult(shop_currency=currency, shop_timezone=timezone, revenue_basis=basis)
    state = None if full_rebuild else _read_state(conn)
    marks, at_state = _raw_marks(conn, state)
    if not full_rebuild:
        result.full_reason = _why_not_merge(conn, state, marks, at_state, params)
    try:
        with transaction(conn):
            conn.execute(f"create schema if not exists {BUILD_SCHEMA}")
            if full_rebuild or result.full_reason:
                _full_build(conn, params, result)
            else:
                result.mode = "merge"
                _merge(conn, params, state, result)
            result.reconciliation = reconcile(conn)
            unbalanced = [r for r in result.reconciliation + result.load_reconciliation if not r.balanced]
            if unbalanced:
                raise RuntimeError(f"staging lost rows: {unbalanced}")
            _write_state(conn, marks, params, result.mode)
            _log_changes(conn, result.mode)
    finally:
        _drop_build_objects(conn)
    result.row_counts = {
        t: int(conn.execute(f"select count(*) from staging.{t}").fetchone()[0]) for t in STAGING_TABLES
    }
    result.reject_reasons = dict(
        conn.execute(
            "select reason, count(*) from staging.rejected_rows group by reason order by 2 desc"
        ).fetchall()
    )
    return result


VIEW_SCRIPTS = ("01_order_versions.sql", "02_profile_versions.sql")
"""Scripts that define a view, which DuckDB cannot prepare with parameters: their parameters
are written in as quoted literals (all of them validated above: an ISO code, an IANA zone, a basis)."""


def _script(name: str, params: dict | None = None) -> str:
    sql = read_sql("clv_platform.transforms", f"sql/staging/{name}")
    if name in VIEW_SCRIPTS and params:
        for key, value in params.items():
            sql = sql.replace(f"${key}", "'" + str(value).replace("'", "''") + "'")
    return sql


def _full_build(conn: duckdb.DuckDBPyConnection, params: dict, result: StagingResult) -> None:
    """Every staging table from every raw row (the scripts of STAGING_SCRIPTS in order)."""
    conn.execute("create or replace temp view _raw_orders_scope as select rowid as raw_rowid, * from raw.shopify_orders")
    conn.execute("create or replace temp view _raw_profiles_scope as "
                 "select rowid as raw_rowid, * from raw.klaviyo_profiles")
    for script in STAGING_SCRIPTS:
        started = time.perf_counter()
        if script == "01_rank_order_versions.sql":
            conn.execute("create or replace temp view _order_versions_rank_input as select * from _order_versions_checked")
        if script == "02_rank_profile_versions.sql":
            conn.execute("create or replace temp view _profile_versions_rank_input as "
                         "select * from _profile_versions_checked")
        run_script(conn, _script(script, params), params)
        result.script_seconds[script] = time.perf_counter() - started


# --- merge -----------------------------------------------------------------------------------

_STATEMENT_HEAD = re.compile(r"^create or replace (?:temp )?(?:table|view) ([a-z_.]+) as\b", re.MULTILINE)


def _statement(script: str, target: str) -> str:
    """The one statement of `script` that creates `target` (fails loudly if the SQL changed)."""
    found = [st for st in split_statements(_script(script))
             if (m := _STATEMENT_HEAD.search(st)) and m.group(1) == target]
    if len(found) != 1:
        raise RuntimeError(f"{script}: expected one statement creating {target}, found {len(found)}")
    return found[0]


def _scoped(script: str, target: str, into: str | None, sources: dict[str, str]) -> str:
    """`target`'s statement of `script`, writing to temp table `into` (None: `target` itself),
    with each source table replaced by a subquery (its affected rows). Every named source must
    occur, so a renamed table in the SQL fails here instead of silently reading everything."""
    sql = _statement(script, target)
    head = _STATEMENT_HEAD.search(sql)
    body = sql[head.end():]
    for table, subquery in sources.items():
        pattern = re.compile(r"(?<![\w.])" + re.escape(table) + r"(?![\w])")
        if not pattern.search(body):
            raise RuntimeError(f"{script}: {target} does not read {table}")
        body = pattern.sub(lambda _m: f"({subquery})", body)
    kind = "temp table" if into else "table"
    return f"create or replace {kind} {into or target} as{body}"


def _run(conn: duckdb.DuckDBPyConnection, params: dict, sql: str) -> None:
    run_script(conn, sql, params)


def _in(table: str, key: str, keys: str, column: str | None = None) -> str:
    """`select * from table where key in (select column from keys)`."""
    return f"select * from {table} where {key} in (select {column or key} from {keys})"


def _replace_rows(conn: duckdb.DuckDBPyConnection, table: str, key: str, keys: str, delta: str,
                  old_rows: str | None = None) -> None:
    """Delete `table`'s rows whose `key` is in `keys`, then insert the delta's rows.

    `old_rows`: a temp table that already holds the `_rowid` of exactly those rows (read earlier in the
    same transaction, so the row ids still hold); the delete then finds them by row id instead of
    scanning the key column of the whole table again."""
    if old_rows:
        conn.execute(f"delete from {table} where rowid in (select _rowid from {old_rows})")
    else:
        conn.execute(f"delete from {table} where {key} in (select {key} from {keys})")
    conn.execute(f"insert into {table} by name select * from {delta}")


def _replace_changed_rows(conn: duckdb.DuckDBPyConnection, table: str, key: str, keys: str, delta: str) -> int:
    """Like `_replace_rows`, but deletes and inserts only the rows that differ (a multiset difference
    over every column), and returns how many rows it deleted.

    For tables whose rows are recomputed per customer, most of which come back identical: at 300k a
    day's merge recomputed 49,480 `staging.order_history` rows (every order of 4,799 customers).
    Every deleted row is a hole that DuckDB's checkpoint later vacuums by rewriting whole row groups
    (four adjacent groups merged into three), so deleting and re-inserting identical rows made that
    night's commit rewrite 726,590 rows of the table (2.0-2.5 s of a 2.7-2.9 s checkpoint)."""
    columns = [row[0] for row in conn.execute(f"select column_name from (describe {table})").fetchall()]
    same = " and ".join(f"o.{c} is not distinct from n.{c}" for c in ("_dup", *columns))
    numbered = ", row_number() over (partition by {cols}) as _dup".format(cols=", ".join(columns))
    # the keys' current rows, read from the table once; _dup numbers identical rows (a multiset)
    conn.execute(f"create or replace temp table _changed_old as select rowid as _rowid, *{numbered} from {table} "
                 f"where {key} in (select {key} from {keys})")
    conn.execute(f"create or replace temp table _changed_new as select *{numbered} from {delta}")
    conn.execute("create or replace temp table _changed_gone as select o._rowid from _changed_old as o "
                 f"where not exists (select 1 from _changed_new as n where {same})")
    deleted = int(conn.execute("select count(*) from _changed_gone").fetchone()[0])
    conn.execute(f"delete from {table} where rowid in (select _rowid from _changed_gone)")
    conn.execute(f"insert into {table} by name select * exclude (_dup) from _changed_new as n "
                 f"where not exists (select 1 from _changed_old as o where {same})")
    return deleted


def _count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


def _merge(conn: duckdb.DuckDBPyConnection, params: dict, state: dict, result: StagingResult) -> None:
    """Merge the raw rows that arrived since the last build (rowid above its high-water mark)."""
    started = time.perf_counter()
    conn.execute("create or replace temp view _raw_orders_scope as "
                 f"select rowid as raw_rowid, * from raw.shopify_orders where rowid > {int(state['orders_max_rowid'])}")
    conn.execute("create or replace temp view _raw_profiles_scope as "
                 f"select rowid as raw_rowid, * from raw.klaviyo_profiles where rowid > {int(state['profiles_max_rowid'])}")
    run_script(conn, _script("00_value_limits.sql"), params)
    run_script(conn, _script("00_payload_macros.sql"), params)

    # 1. versions: parse the new rows, re-rank them with the stored versions of the same orders/profiles
    run_script(conn, _script("01_order_versions.sql", params), params)
    conn.execute("create or replace temp table _new_order_versions as select * from _order_versions_checked")
    conn.execute("create or replace temp table _aff_orders as "
                 "select distinct order_id from _new_order_versions where order_id is not null")
    # the stored versions of the touched orders, read once: the ranking and `_old_accepted` both need
    # them, and each read is a scan of every stored version (a semi join reads all its columns)
    conn.execute("create or replace temp table _stored_versions as select rowid as _rowid, * "
                 "from staging_build._order_versions where order_id in (select order_id from _aff_orders)")
    conn.execute(
        """
        create or replace temp view _order_versions_rank_input as
        select * from _new_order_versions
        union all by name
        select * exclude (_rowid, version_rank, latest_updated_at, reject_reason, accepted) from _stored_versions
        """
    )
    _run(conn, params, _scoped("01_rank_order_versions.sql", "staging_build._order_versions", "_order_versions_delta",
                         {"_order_versions_rank_input": "select * from _order_versions_rank_input"}))
    run_script(conn, _script("02_profile_versions.sql", params), params)
    conn.execute("create or replace temp table _new_profile_versions as select * from _profile_versions_checked")
    conn.execute("create or replace temp table _aff_profiles as "
                 "select distinct profile_id from _new_profile_versions where profile_id is not null")
    conn.execute(
        """
        create or replace temp view _profile_versions_rank_input as
        select * from _new_profile_versions
        union all by name
        select * exclude (version_rank, latest_updated_at)
        from staging_build._profile_versions where profile_id in (select profile_id from _aff_profiles)
        """
    )
    _run(conn, params, _scoped("02_rank_profile_versions.sql", "staging_build._profile_versions", "_profile_versions_delta",
                         {"_profile_versions_rank_input": "select * from _profile_versions_rank_input"}))
    _run(conn, params, _scoped("02_rank_profile_versions.sql", "_profile_versions_judged", "_profile_versions_delta_judged",
                         {"staging_build._profile_versions": "select * from _profile_versions_delta"}))
    # per load: the new raw rows, accepted or rejected as this merge judged them
    result.load_reconciliation = [
        Reconciliation(table, *map(int, conn.execute(
            f"select count(*), count(*) filter (where {accepted}), count(*) filter (where not ({accepted})) "
            f"from {delta} where raw_rowid > ?", [int(state[mark])]).fetchone()))
        for table, delta, accepted, mark in (
            ("raw.shopify_orders (this load)", "_order_versions_delta", "accepted", "orders_max_rowid"),
            ("raw.klaviyo_profiles (this load)", "_profile_versions_delta_judged", "reject_reason is null",
             "profiles_max_rowid"),
        )
    ]

    # what the touched orders and profiles were before (their old identities must be re-resolved too)
    conn.execute("""
        create or replace temp table _old_accepted as
        select order_id, shopify_customer_id, email from _stored_versions where accepted
    """)
    run_script(conn, _statement("02_rank_profile_versions.sql", "_profile_versions_judged"), params)
    run_script(conn, _statement("04_identity.sql", "_accepted_orders"), params)
    run_script(conn, _statement("04_identity.sql", "_accepted_profiles"), params)
    conn.execute("""
        create or replace temp table _old_profiles as
        select profile_id, email from _accepted_profiles where profile_id in (select profile_id from _aff_profiles)
    """)
    # the deltas also hold the new rows without an id (rejected, and never a version of another row)
    _replace_rows(conn, "staging_build._order_versions", "order_id", "_aff_orders", "_order_versions_delta",
                  old_rows="_stored_versions")
    _replace_rows(conn, "staging_build._profile_versions", "profile_id", "_aff_profiles", "_profile_versions_delta")

    # 2. identity: the Shopify customers, emails and customer map rows the touched records reach
    conn.execute("""
        create or replace temp table _aff_sc as
        select shopify_customer_id from _old_accepted where shopify_customer_id is not null
        union
        select shopify_customer_id from _order_versions_delta where accepted and shopify_customer_id is not null
    """)
    conn.execute("""
        create or replace temp table _aff_email as
        select email from staging_build._shopify_customers
        where shopify_customer_id in (select shopify_customer_id from _aff_sc) and email is not null
        union select email from _old_accepted where email is not null
        union select email from _order_versions_delta where accepted and email is not null
        union select email from _old_profiles where email is not null
        union select email from _profile_versions_delta_judged where reject_reason is null and email is not null
    """)
    _run(conn, params, _scoped("04_identity.sql", "staging_build._shopify_customers", "_shopify_customers_delta",
                         {"_accepted_orders": _in("_accepted_orders", "shopify_customer_id", "_aff_sc")}))
    _replace_rows(conn, "staging_build._shopify_customers", "shopify_customer_id", "_aff_sc",
                  "_shopify_customers_delta")
    conn.execute("insert into _aff_email select email from _shopify_customers_delta where email is not null "
                 "except select email from _aff_email")
    conn.execute("""
        create or replace temp table _aff_customers as
        select customer_id from staging_build._email_identity where email in (select email from _aff_email)
        union select 'klaviyo:' || profile_id from _aff_profiles
        union select shopify_customer_id from _aff_sc
    """)
    _run(conn, params, _scoped("04_identity.sql", "staging_build._email_identity", "_email_identity_delta", {
        "staging_build._shopify_customers": _in("staging_build._shopify_customers", "email", "_aff_email"),
        "_accepted_profiles": _in("_accepted_profiles", "email", "_aff_email"),
    }))
    # the person each touched email resolved to before: only a changed one re-resolves guest orders
    conn.execute("create or replace temp table _old_email_identity as select email, customer_id "
                 "from staging_build._email_identity where email in (select email from _aff_email)")
    _replace_changed_rows(conn, "staging_build._email_identity", "email", "_aff_email", "_email_identity_delta")
    conn.execute("""
        create or replace temp table _aff_map as
        select shopify_customer_id from _aff_sc
        union select shopify_customer_id from staging_build._shopify_customers
        where email in (select email from _aff_email)
    """)
    conn.execute("insert into _aff_customers select customer_id from staging_build._customer_map "
                 "where shopify_customer_id in (select shopify_customer_id from _aff_map)")
    _run(conn, params, _scoped("04_identity.sql", "staging_build._customer_map", "_customer_map_delta", {
        "staging_build._shopify_customers": _in("staging_build._shopify_customers", "shopify_customer_id", "_aff_map"),
    }))
    conn.execute("create or replace temp table _old_customer_map as select shopify_customer_id, customer_id "
                 "from staging_build._customer_map where shopify_customer_id in (select shopify_customer_id from _aff_map)")
    _replace_rows(conn, "staging_build._customer_map", "shopify_customer_id", "_aff_map", "_customer_map_delta")
    conn.execute("""
        insert into _aff_customers
        select customer_id from _email_identity_delta union all select customer_id from _customer_map_delta
    """)

    # 3. orders whose row may change: the touched ones, and those whose person changed. A resolved
    # order reads only its own version, its Shopify customer's map row and (a guest order) its
    # email's identity, so an order of a touched person whose map row / identity resolves to the
    # same customer as before keeps its rows (a repeat buyer's new order re-resolves that order,
    # not their whole history).
    conn.execute("""
        create or replace temp table _changed_map as
        select shopify_customer_id
        from _old_customer_map as o full join _customer_map_delta as n using (shopify_customer_id)
        where o.customer_id is distinct from n.customer_id
    """)
    conn.execute("""
        create or replace temp table _changed_email as
        select email
        from _old_email_identity as o full join _email_identity_delta as n using (email)
        where o.customer_id is distinct from n.customer_id
    """)
    # the orders a changed person moves (not among the touched ones): on most nights no map row or
    # e-mail identity changes owner, and the scan of every accepted version for them is skipped
    moved = _count(conn, "_changed_map") + _count(conn, "_changed_email") > 0
    conn.execute("create or replace temp table _moved_orders as " + (
        """select order_id from _accepted_orders
        where (shopify_customer_id in (select shopify_customer_id from _changed_map)
               or (shopify_customer_id is null and email in (select email from _changed_email)))
          and order_id not in (select order_id from _aff_orders)"""
        if moved else "select order_id from _aff_orders limit 0"))
    conn.execute("create or replace temp table _aff_resolve as "
                 "select order_id from _aff_orders union all select order_id from _moved_orders")
    # the re-resolved orders' current rows, read once: their old owners (the customers whose purchase
    # history can change are those who had or now have a re-resolved order), their old lines' products,
    # and the row ids the replacement deletes
    conn.execute("create or replace temp table _old_resolved as select rowid as _rowid, customer_id "
                 "from staging_build._resolved_orders where order_id in (select order_id from _aff_resolve)")
    conn.execute("create or replace temp table _aff_history as "
                 "select customer_id from _old_resolved where customer_id is not null")
    conn.execute("insert into _aff_customers select customer_id from _aff_history")
    conn.execute("""
        create or replace temp table _old_lines as
        select rowid as _rowid, product_id, sku, title, category, order_date, quantity, line_revenue, is_cancelled
        from staging.order_lines where order_id in (select order_id from _aff_resolve)
    """)
    conn.execute("create or replace temp table _aff_products as "
                 "select product_id from _old_lines where product_id is not null")
    # the touched orders' accepted versions are in the ranking's delta; only moved orders are read back
    _run(conn, params, _scoped("05_staging_tables.sql", "staging_build._resolved_orders", "_resolved_orders_delta",
                         {"_accepted_orders": "select * from _order_versions_delta where accepted"
                                              + (" union all by name " + _in("_accepted_orders", "order_id",
                                                                             "_moved_orders") if moved else "")}))
    _replace_rows(conn, "staging_build._resolved_orders", "order_id", "_aff_resolve", "_resolved_orders_delta",
                  old_rows="_old_resolved")
    conn.execute("insert into _aff_history select customer_id from _resolved_orders_delta where customer_id is not null")
    conn.execute("create or replace temp table _aff_history as select distinct customer_id from _aff_history")
    conn.execute("insert into _aff_customers select customer_id from _aff_history")
    no_files = {"staging_build._file_rows": "select * from staging_build._file_rows limit 0"}
    no_credits = {"staging_build._file_credits": "select * from staging_build._file_credits limit 0"}
    resolved = {"staging_build._resolved_orders": "select * from _resolved_orders_delta"}
    for table, sources in (
        ("staging.orders", {**resolved, **no_files, **no_credits}),
        ("staging.order_lines", {**resolved, **no_files}),
        ("staging.refunds", {**resolved, **no_files, **no_credits}),
    ):
        delta = "_delta_" + table.split(".")[1]
        _run(conn, params, _scoped("05_staging_tables.sql", table, delta, sources))
        _replace_rows(conn, table, "order_id", "_aff_resolve", delta,
                      old_rows="_old_lines" if table == "staging.order_lines" else None)
    conn.execute("insert into _aff_products select product_id from _delta_order_lines where product_id is not null")
    conn.execute("create or replace temp table _aff_products as select distinct product_id from _aff_products")
    products_recounted = _merge_products(conn, params)

    # 4. customers, their purchase history and acquisition: every customer any of the above touched
    conn.execute("create or replace temp table _aff_customers as "
                 "select distinct customer_id from _aff_customers where customer_id is not null")
    _run(conn, params, _scoped("05_staging_tables.sql", "staging.customers", "_delta_customers", {
        "staging_build._email_identity": _in("staging_build._email_identity", "customer_id", "_aff_customers"),
        "staging_build._shopify_customers": _in("staging_build._shopify_customers", "shopify_customer_id",
                                                "_aff_customers", "customer_id"),
        "_accepted_profiles": "select * from _accepted_profiles where 'klaviyo:' || profile_id in "
                              "(select customer_id from _aff_customers) or profile_id in (select klaviyo_profile_id "
                              "from staging_build._email_identity where customer_id in "
                              "(select customer_id from _aff_customers))",
        "staging_build._file_rows": "select * from staging_build._file_rows where 'import:' || customer_key in "
                                    "(select customer_id from _aff_customers)",
        "staging.orders": _in("staging.orders", "customer_id", "_aff_customers"),
    }))
    # most touched people come back unchanged (a repeat buyer's identity, a profile field no column
    # reads): only the rows that differ are deleted, so the checkpoint has fewer holes to vacuum
    customers_replaced = _replace_changed_rows(conn, "staging.customers", "customer_id", "_aff_customers",
                                               "_delta_customers")
    # order_history and customer_acquisition read only a customer's orders, lines and refunds: an
    # identity change that moved no order (a profile update, a new email) leaves them as they are
    # a refund row carries its order's customer (both written from one resolved order; a file credit
    # note is matched to its own customer's order, and file customers are never re-resolved by a
    # merge), so the refunds are selected by customer instead of by a second scan of staging.orders
    _run(conn, params, _scoped("06_order_history.sql", "staging.order_history", "_delta_order_history", {
        "staging.orders": _in("staging.orders", "customer_id", "_aff_history"),
        "staging.order_lines": _in("staging.order_lines", "customer_id", "_aff_history"),
        "staging.refunds": _in("staging.refunds", "customer_id", "_aff_history"),
    }))
    conn.execute("create or replace temp table _old_firsts as select customer_id, order_id from staging.order_history "
                 "where purchase_seq = 1 and customer_id in (select customer_id from _aff_history)")
    history_replaced = _replace_changed_rows(conn, "staging.order_history", "customer_id", "_aff_history",
                                             "_delta_order_history")
    # a customer's acquisition row reads only their first purchase: its order row, its accepted
    # payload. A repeat buyer's new order leaves both as they were, so only customers whose first
    # purchase is another order, or was re-resolved, are re-read: at 300k, 557 first-order payloads
    # instead of 5,694 (an old order's payload is a cold block read somewhere in the raw table).
    conn.execute("""
        create or replace temp table _aff_acquisition as
        select h.customer_id
        from _aff_history as h
        left join _old_firsts as o using (customer_id)
        left join (select customer_id, order_id from _delta_order_history where purchase_seq = 1) as n
            using (customer_id)
        where o.order_id is distinct from n.order_id or o.order_id is null
           or n.order_id in (select order_id from _aff_resolve)
    """)
    _run(conn, params, _scoped("07_acquisition.sql", "staging.customer_acquisition", "_delta_acquisition", {
        "staging.order_history": _in("staging.order_history", "customer_id", "_aff_acquisition"),
    }))
    _replace_rows(conn, "staging.customer_acquisition", "customer_id", "_aff_acquisition", "_delta_acquisition")

    # 5. rejected rows of the touched orders and profiles (rows of unknown id are new rows only)
    _run(conn, params, _scoped("05_staging_tables.sql", "staging.rejected_rows", "_delta_rejected", {
        "staging_build._order_versions": "select * from _order_versions_delta",
        "_profile_versions_judged": "select * from _profile_versions_delta_judged",
        **no_files,
    }))
    conn.execute("""
        delete from staging.rejected_rows
        where (source_table = 'raw.shopify_orders' and record_id in (select order_id from _aff_orders))
           or (source_table = 'raw.klaviyo_profiles' and record_id in (select profile_id from _aff_profiles))
    """)
    conn.execute("insert into staging.rejected_rows by name select * from _delta_rejected")
    result.merged = {
        name: int(conn.execute(f"select count(*) from {table}").fetchone()[0])
        for name, table in (("orders", "_aff_orders"), ("profiles", "_aff_profiles"),
                            ("orders_resolved", "_aff_resolve"), ("customers", "_aff_customers"),
                            ("history_customers", "_aff_history"),
                            ("acquisition_customers", "_aff_acquisition"),
                            ("products", "_aff_products"))
    }
    result.merged["history_rows_replaced"] = history_replaced
    result.merged["products_recounted"] = products_recounted
    result.merged["customer_rows_replaced"] = customers_replaced
    result.script_seconds["merge"] = time.perf_counter() - started


PRODUCT_ADJUSTED = """
create or replace temp table _products_adjusted as
with gone as (
    select product_id, count(*) as n, min(order_date) as first_day, max(order_date) as last_day,
           sum(case when is_cancelled then 0 else quantity end) as units,
           sum(case when is_cancelled then 0 else line_revenue end) as revenue
    from _old_lines where product_id is not null group by product_id
),
came as (
    select product_id, count(*) as n, min(order_date) as first_day, max(order_date) as last_day,
           sum(case when is_cancelled then 0 else quantity end) as units,
           sum(case when is_cancelled then 0 else line_revenue end) as revenue
    from _delta_order_lines where product_id is not null group by product_id
),
-- per product and text column: touched lines that carry another value than the product's mode
-- (`odd`), and the net change of the mode value's count (`net`)
texts as (
    select l.product_id, l.sign,
           not coalesce(l.sku is null or l.sku = p.sku, false) as odd_sku,
           not coalesce(l.title is null or l.title = p.title, false) as odd_title,
           not coalesce(l.category is null or l.category = p.category, false) as odd_category,
           l.sku = p.sku as is_sku, l.title = p.title as is_title, l.category = p.category as is_category
    from (select product_id, sku, title, category, -1 as sign from _old_lines
          union all
          select product_id, sku, title, category, 1 from _delta_order_lines) as l
    join staging.products as p using (product_id)
),
modes_kept as (
    select product_id,
           not bool_or(odd_sku or odd_title or odd_category)
           and coalesce(sum(sign) filter (where is_sku), 0) >= 0
           and coalesce(sum(sign) filter (where is_title), 0) >= 0
           and coalesce(sum(sign) filter (where is_category), 0) >= 0 as kept
    from texts group by product_id
)
select
    p.product_id, p.sku, p.title, p.category,
    least(p.first_sold_at, c.first_day) as first_sold_at,
    greatest(p.last_sold_at, c.last_day) as last_sold_at,
    cast(p.units_sold - coalesce(g.units, 0) + coalesce(c.units, 0) as bigint) as units_sold,
    cast(p.revenue - coalesce(g.revenue, 0) + coalesce(c.revenue, 0) as decimal(38, 2)) as revenue,
    -- the stored row plus the day's lines minus the replaced ones is the product's aggregate over
    -- all its lines when: every mode stays (above); a removed line at the first / last day is
    -- matched by a new one at or beyond it; and the product keeps at least as many lines
    m.kept
    and (g.first_day is null or g.first_day > p.first_sold_at or c.first_day <= p.first_sold_at)
    and (g.last_day is null or g.last_day < p.last_sold_at or c.last_day >= p.last_sold_at)
    and coalesce(c.n, 0) >= coalesce(g.n, 0) as exact
from staging.products as p
join _aff_products using (product_id)
left join gone as g using (product_id)
left join came as c using (product_id)
left join modes_kept as m using (product_id)
"""


def _merge_products(conn: duckdb.DuckDBPyConnection, params: dict) -> int:
    """Bring the touched products' rows up to date from the lines the merge replaced, not from all their lines.

    The demo store sells every one of its products each day, so re-aggregating the touched products
    read every order line of the store each night. A product's units and revenue are sums (the
    stored value minus the replaced lines plus the new ones is exact in DECIMAL), its first and last
    day are kept unless a replaced line held them, and its sku, title and category are modes that
    stay when every touched line carries the product's value (or none) and that value's count does
    not fall. Products where any of this fails, and new products, are aggregated from all their
    lines with the full build's statement, as before (reads `_old_lines`: the replaced lines).
    Returns how many products were aggregated that way."""
    conn.execute(PRODUCT_ADJUSTED)
    conn.execute("create or replace temp table _products_recount as select product_id from _aff_products "
                 "where product_id not in (select product_id from _products_adjusted where exact)")
    conn.execute("create or replace temp table _delta_products as "
                 "select * exclude (exact) from _products_adjusted where exact")
    recount = _count(conn, "_products_recount")
    if recount:
        _run(conn, params, _scoped("05_staging_tables.sql", "staging.products", "_products_recounted", {
            "staging.order_lines": _in("staging.order_lines", "product_id", "_products_recount")}))
        conn.execute("insert into _delta_products by name select * from _products_recounted")
    _replace_rows(conn, "staging.products", "product_id", "_aff_products", "_delta_products")
    return recount


# --- high-water mark ---------------------------------------------------------------------------

def _raw_marks(conn: duckdb.DuckDBPyConnection, state: dict | None = None) -> tuple[dict, dict]:
    """Where raw stands: the last rowid of each API table with a fingerprint of every row up to
    it, and a fingerprint of the imported files. A delete, a re-insert or a moved rowid changes
    the fingerprint of rows a merge would otherwise trust.

    Also returns the fingerprints of the rows up to `state`'s high-water marks (what the last build
    read), taken in the same scan of each table: the nightly check costs one pass over raw's keys."""
    marks: dict = {}
    at_state: dict = {}
    for table, prefix, key in (("raw.shopify_orders", "orders", "order_id"),
                               ("raw.klaviyo_profiles", "profiles", "profile_id")):
        bound = int(state[f"{prefix}_max_rowid"]) if state else -1
        row = conn.execute(
            f"""
            select coalesce(max(rowid), -1), count(*), coalesce(bit_xor(h), 0),
                   count(*) filter (where rowid <= $bound), coalesce(bit_xor(h) filter (where rowid <= $bound), 0)
            from (select rowid, hash(rowid, {key}, updated_at, ingested_at) as h from {table})
            """, {"bound": bound}
        ).fetchone()
        marks[f"{prefix}_max_rowid"], marks[f"{prefix}_rows"] = int(row[0]), int(row[1])
        marks[f"{prefix}_fingerprint"] = f"{row[1]}:{row[2]}"
        at_state[prefix] = f"{row[3]}:{row[4]}"
    files = conn.execute(
        "select count(*), coalesce(bit_xor(hash(rowid, file_name, row_number, content_sha256, ingested_at)), 0) "
        "from raw.file_transactions"
    ).fetchone()
    marks["files_fingerprint"] = f"{files[0]}:{files[1]}"
    return marks, at_state


def _read_state(conn: duckdb.DuckDBPyConnection) -> dict | None:
    try:
        cur = conn.execute(f"select * from {STATE_TABLE}")
    except duckdb.CatalogException:
        return None
    row = cur.fetchone()
    return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None


def _why_not_merge(conn: duckdb.DuckDBPyConnection, state: dict | None, marks: dict, at_state: dict,
                   params: dict) -> str | None:
    """None when the raw rows since `state` can be merged, else why a full build is needed
    (`at_state`: the fingerprints of raw up to `state`'s marks now, from `_raw_marks`)."""
    if state is None:
        return "no previous build"
    for key in ("shop_currency", "shop_timezone", "revenue_basis", "file_date_order"):
        # a build before the date order setting read such files as "auto" does
        before = state.get(key, "auto" if key == "file_date_order" else None)
        if before != params[key]:
            return f"{key} changed ({before} → {params[key]})"
    if state.get("rules_version") != RULES_VERSION:
        return (f"the staging rules changed (scripts version {state.get('rules_version') or 'unrecorded'} → "
                f"{RULES_VERSION}): every raw row is parsed again with them")
    if state["files_fingerprint"] != marks["files_fingerprint"]:
        return "imported files changed"
    for table, prefix in (("raw.shopify_orders", "orders"), ("raw.klaviyo_profiles", "profiles")):
        if at_state[prefix] != state[f"{prefix}_fingerprint"]:
            return f"rows of {table} already built were deleted or re-inserted"
    missing = [t for t in (*(f"staging.{t}" for t in STAGING_TABLES), f"{BUILD_SCHEMA}._order_versions",
                           f"{BUILD_SCHEMA}._profile_versions", f"{BUILD_SCHEMA}._resolved_orders",
                           f"{BUILD_SCHEMA}._file_rows", f"{BUILD_SCHEMA}._customer_map")
               if not table_exists(conn, t)]
    if missing:
        return f"tables of the last build are missing: {', '.join(missing)}"
    return None


def _write_state(conn: duckdb.DuckDBPyConnection, marks: dict, params: dict, mode: str) -> None:
    values = {**marks, "shop_currency": params["shop_currency"], "shop_timezone": params["shop_timezone"],
              "revenue_basis": params["revenue_basis"], "file_date_order": params["file_date_order"],
              "rules_version": RULES_VERSION, "mode": mode}
    conn.execute(
        f"create or replace table {STATE_TABLE} as select now() as built_at, "
        + ", ".join(f"${k} as {k}" for k in values),
        values,
    )


CHANGE_LOG = f"{BUILD_SCHEMA}.change_log"
"""What each build changed, for the marts that update only the groups a day touched
(``marts/incremental.py``): one row per build (``seq``, ``mode``, kind and key null), and for a
merge one row per customer whose order lines may have changed (``kind`` 'customer': a previous or
new owner of a re-resolved order) and per re-resolved order (``kind`` 'order', for guest orders).
A full build empties the log: every reader rebuilds."""

CHANGE_LOG_MERGES_KEPT = 60
"""Merges kept in the change log; a reader that fell further behind sees the gap and rebuilds."""


def _log_changes(conn: duckdb.DuckDBPyConnection, mode: str) -> None:
    """Append this build to ``CHANGE_LOG`` (in the build's transaction, before its temp tables go)."""
    conn.execute(f"create table if not exists {CHANGE_LOG} (seq bigint, mode varchar, kind varchar, key varchar)")
    seq = int(conn.execute(f"select coalesce(max(seq), 0) + 1 from {CHANGE_LOG}").fetchone()[0])
    if mode != "merge":
        conn.execute(f"delete from {CHANGE_LOG}")
    conn.execute(f"insert into {CHANGE_LOG} values (?, ?, null, null)", [seq, mode])
    if mode == "merge":
        conn.execute(f"insert into {CHANGE_LOG} select ?, 'merge', 'customer', customer_id from _aff_history", [seq])
        conn.execute(f"insert into {CHANGE_LOG} select ?, 'merge', 'order', order_id from _aff_resolve", [seq])
        conn.execute(f"delete from {CHANGE_LOG} where seq <= ?", [seq - CHANGE_LOG_MERGES_KEPT])


def _drop_build_objects(conn: duckdb.DuckDBPyConnection) -> None:
    """Drop the views and delta tables of one build; the `staging_build` tables stay for the next merge."""
    for view in BUILD_VIEWS:
        conn.execute(f"drop view if exists {view}")
    temps = conn.execute(
        "select table_name from duckdb_tables() where temporary and "
        "(table_name like '\\_delta\\_%' escape '\\' or table_name like '\\_aff\\_%' escape '\\' "
        "or table_name like '%\\_delta' escape '\\' or table_name in ('_new_order_versions', "
        "'_new_profile_versions', '_old_accepted', '_old_profiles', '_old_email_identity', '_old_customer_map', "
        "'_changed_map', '_changed_email', '_old_firsts', '_stored_versions', '_moved_orders', '_old_resolved', "
        "'_old_lines', '_products_adjusted', '_products_recount', '_products_recounted', '_changed_old', '_changed_new', '_changed_gone'))"
    ).fetchall()
    for (name,) in temps:
        conn.execute(f"drop table if exists temp.{name}")


def reconcile(conn: duckdb.DuckDBPyConnection) -> list[Reconciliation]:
    """Count, per raw table, records in vs accepted vs rejected (reads the temp tables of a build)."""
    rows = conn.execute(
        """
        select 'raw.shopify_orders',
               (select count(*) from raw.shopify_orders),
               (select count(*) from staging.orders where source <> 'file'),
               (select count(*) from staging.rejected_rows where source_table = 'raw.shopify_orders')
        union all
        select 'raw.klaviyo_profiles',
               (select count(*) from raw.klaviyo_profiles),
               (select count(*) from _accepted_profiles),
               (select count(*) from staging.rejected_rows where source_table = 'raw.klaviyo_profiles')
        union all
        select 'raw.file_transactions',
               (select count(*) from raw.file_transactions),
               (select count(*) from staging_build._file_rows where reject_reason is null),
               (select count(*) from staging.rejected_rows where source_table = 'raw.file_transactions')
        """
    ).fetchall()
    return [Reconciliation(t, int(i), int(a), int(r)) for t, i, a, r in rows]
