"""marts/revenue_forecast and marts/acquisition_value: the store's next twelve months and where
valuable customers come from.

``revenue_forecast`` runs ``forecast.revenue`` on staging.orders at the scoring cutoff, with each
customer's predicted spend from scores.customer_clv spread over time by the BTYD model of
ml/btyd_scores; what it needs from the orders is grouped in SQL (``forecast_refit``, ``sql/forecast_*.sql``). ``acquisition_value`` is ``sql/acquisition_value.sql`` over staging.customer_acquisition
and the CLV scores. Both tables carry column comments (DuckDB ``comment on column``) and the same
descriptions in the asset's column schema.
"""

from datetime import date

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from clv_platform import contract
from clv_platform.core.sql import sql_code_version
from clv_platform.resources.storage import read_sql, replace_table, row_count, run_script, settings_of, table_exists
from clv_platform.models.clv_assets import BTYD_KEY, CUSTOMER_CLV
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.staging_assets import CUSTOMER_ACQUISITION, ORDER_HISTORY, ORDERS
from clv_platform.transforms.order_gaps import unobserved_gaps

OWNERS = ["team:analytics"]
FORECAST_TABLE = "marts.revenue_forecast"
ACQUISITION_TABLE = "marts.acquisition_value"

# Column descriptions of both marts: data_contract.toml (the one source; see contract.py).
# Per-customer CLV interval columns, under the names the scores may carry them.
_CLV_P10 = ("clv_p10", "predicted_clv_p10", "predicted_clv_low")
_CLV_P90 = ("clv_p90", "predicted_clv_p90", "predicted_clv_high")


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    schema, name = table.split(".")
    return {
        c for (c,) in conn.execute(
            "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchall()
    }


# ----------------------------------------------------------------------------- revenue forecast
def store_transactions(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Never-cancelled orders as (customer_id, order_date, amount); an untied guest order is its own buyer.

    The input of ``forecast.revenue``'s pandas functions (the backtest's path); the asset groups in
    SQL instead (``forecast_refit``) and the tests hold it to what these give on this frame.
    """
    return conn.execute(
        """
        select coalesce(customer_id, 'guest:' || order_id) as customer_id, order_date,
               net_revenue::double as amount
        from staging.orders
        where not is_cancelled
        """
    ).df()


def _btyd_features(summary: pd.DataFrame, recency_weeks: str, T_weeks: str) -> pd.DataFrame:
    """The BTYD model's input frame from a per-customer summary in weeks.

    ml.btyd_scores and ``btyd.summarize`` name the week columns differently; one conversion to
    the model's day columns keeps both sources of the forecast fitting the same features.
    """
    return pd.DataFrame({
        "customer_id": summary["customer_id"].astype(str),
        "frequency": summary["frequency"].astype(int),
        "first_to_last_order_days": summary[recency_weeks] * 7.0,
        "T_days": summary[T_weeks] * 7.0,
        "monetary": summary["monetary"].astype(float),
    })


def _forecast_inputs(conn: duckdb.DuckDBPyConnection, config, cutoff) -> tuple[pd.DataFrame, int, str]:
    """(BTYD features of every customer, horizon days, where they came from)."""
    if table_exists(conn, "ml.btyd_scores"):
        btyd_scores = conn.execute(
            "select customer_id, frequency, recency_weeks, T_weeks, monetary, horizon_days from ml.btyd_scores"
        ).df()
        if btyd_scores.empty:
            raise dg.Failure("ml.btyd_scores is empty: no customer to forecast")
        return (_btyd_features(btyd_scores, "recency_weeks", "T_weeks"), int(btyd_scores["horizon_days"].iloc[0]),
                "ml.btyd_scores")
    # ml/btyd_scores not materialized (e.g. marts rebuilt on their own): the same summary from staging
    from clv_platform.marts import forecast_refit

    summary_frame = forecast_refit.customer_summary(conn, cutoff, known_only=True)
    return (_btyd_features(summary_frame, "recency", "T"), config.horizon_days,
            "staging.orders (ml.btyd_scores missing)")


GROUPED_SUMMARY_SQL = """
select b.frequency::bigint as frequency, b.recency_weeks::double as recency, b.T_weeks::double as T,
       b.monetary::double as monetary, count(*) as customers, {predicted} as predicted_spend{alive}
from ml.btyd_scores as b
{join}
group by all
order by all
"""
"""ml.btyd_scores grouped by the BTYD summary: the existing-customer forecast is a sum over customers,
linear in each one's predicted spend (``revenue.existing_customer_forecast``), so one row per distinct
(frequency, recency, T, monetary) with its customer count and summed prediction gives the same
forecast without a per-customer frame (one-time buyers of a first-order day share one row).
``alive_customers``: the row's sum of scores.customer_clv's p_alive / the BTYD's (1 per customer
where it was not lowered), what the expected purchases are weighed by
(``revenue.existing_customer_forecast``)."""


def _grouped_summary(conn: duckdb.DuckDBPyConnection, with_predicted: bool) -> tuple[pd.DataFrame, pd.Series | None]:
    """(grouped summary, summed predicted spend per row or None), both on the same RangeIndex."""
    sql = GROUPED_SUMMARY_SQL.format(
        predicted="sum(coalesce(c.predicted_spend::double, 0.0))" if with_predicted else "null::double",
        alive=(", sum(case when b.p_alive > 0 and c.p_alive is not null then least(c.p_alive / b.p_alive, 1.0) "
               "else 1.0 end) as alive_customers" if with_predicted else ""),
        join="left join scores.customer_clv as c on c.customer_id::varchar = b.customer_id::varchar"
        if with_predicted else "")
    summary = conn.execute(sql).df()
    predicted = summary.pop("predicted_spend").astype(float)
    return summary, predicted if with_predicted else None


def _btyd_model(conn, config, features: pd.DataFrame | None, cutoff):
    """(the BTYD model ml/btyd_scores served at this cutoff, its stored fit or None, where it came from).

    The stored fit (``ml.stored_fits``) is used when it exists under the same settings and is not
    from a later cutoff; otherwise the BTYD is fitted here on ``features``, as ml/btyd_scores would.
    """
    from clv_platform.models import clv, stored_fits

    stored = stored_fits.load(conn, stored_fits.BTYD)
    if (stored is not None and stored.fit_cutoff <= cutoff
            and stored.config_key == stored_fits.btyd_key_at(conn, config, stored.fit_cutoff)):
        return stored_fits.btyd_from_params(stored.params), stored, f"stored BTYD fit of {stored.fit_cutoff}"
    if features is None:  # the grouped path: the fit needs the per-customer summary
        features, _, _ = _forecast_inputs(conn, config, cutoff)
    return clv.fit_btyd_at(features, config), None, "fitted here (no usable stored BTYD fit)"


def build_revenue_forecast(conn: duckdb.DuckDBPyConnection, context=None, max_age_days: int | None = None,
                           refit: bool = False) -> tuple[pd.DataFrame, dict]:
    """The rows of marts.revenue_forecast and facts for the metadata.

    The seasonal index and the rehearsal's error scales (the two pieces that read every order,
    grouped in DuckDB by ``forecast_refit``) are fitted with the BTYD they belong to and stored in
    ``ml.stored_fits``; a later run reuses them while that BTYD fit is served and they are at most
    ``max_age_days`` cutoff days old (None: ``refit_after_days`` of the settings), and recomputes
    only what depends on the cutoff: every customer's expected spend and the acquisition forecast
    (first orders in SQL).
    """
    from clv_platform.forecast import revenue
    from clv_platform.marts import forecast_refit
    from clv_platform.models import clv, stored_fits
    from clv_platform.models.clv_assets import TRAINING_KEYS
    from clv_platform.settings import load_settings

    if not table_exists(conn, "staging.orders"):
        raise dg.Failure("staging.orders does not exist: materialize staging before marts/revenue_forecast")
    config = clv.load_config()
    cutoff = scoring_cutoff(conn)
    max_age_days = load_settings().refit_after_days if max_age_days is None else max_age_days
    has_predicted = table_exists(conn, "scores.customer_clv") and "predicted_spend" in _columns(conn, "scores.customer_clv")
    predicted = None
    if table_exists(conn, "ml.btyd_scores"):
        # the nightly path: grouped in SQL, never a per-customer frame (see GROUPED_SUMMARY_SQL)
        summary, predicted = _grouped_summary(conn, has_predicted)
        if summary.empty:
            raise dg.Failure("ml.btyd_scores is empty: no customer to forecast")
        horizon_days = int(conn.execute("select any_value(horizon_days) from ml.btyd_scores").fetchone()[0])
        summary_source = "ml.btyd_scores"
        model, btyd_fit, model_source = _btyd_model(conn, config, None, cutoff)
    else:
        features, horizon_days, summary_source = _forecast_inputs(conn, config, cutoff)
        model, btyd_fit, model_source = _btyd_model(conn, config, features, cutoff)
        summary = clv.btyd_summary(features)
        del features
    key = stored_fits.config_key({"btyd_fitted_at": btyd_fit.fitted_at if btyd_fit else None,
                                  "btyd_fit_cutoff": btyd_fit.fit_cutoff if btyd_fit else cutoff,
                                  "horizon_days": horizon_days, "model": revenue.btyd.BGNBD})
    stored = stored_fits.load(conn, stored_fits.REVENUE_FORECAST)
    force = "refit requested" if refit else (stored_fits.training_run(context, TRAINING_KEYS) if context else None)
    decision = stored_fits.decide(stored if btyd_fit is not None else None, cutoff, key, max_age_days, force)
    firsts = forecast_refit.first_orders(conn, cutoff)
    if decision.reuse:
        p = stored.params
        season = revenue.SeasonalIndex(np.asarray(p["season_index"], dtype=float), float(p["season_relative_sd"]),
                                       int(p["season_months_used"]),
                                       closed=tuple(tuple(span) for span in p.get("season_closed", ())))
        rehearsal = revenue.Rehearsal(date.fromisoformat(p["rehearsal_cutoff"]) if p["rehearsal_cutoff"] else None,
                                      float(p["rehearsal_existing_scale"]), float(p["rehearsal_new_scale"]),
                                      int(p["rehearsal_months"]))
        fit_cutoff = stored.fit_cutoff
    else:
        # grouped in DuckDB, never every order in pandas; the rehearsal's BTYD fit sees at most
        # [sampling] max_btyd_fit_customers (as ml/btyd_scores' fit)
        season, rehearsal = forecast_refit.refit(conn, model, cutoff, firsts,
                                                 max_fit_customers=config.max_btyd_fit_customers or None)
        fit_cutoff = cutoff
        stored_fits.save(conn, stored_fits.REVENUE_FORECAST, cutoff, key, {
            "season_index": [float(v) for v in season.index], "season_relative_sd": float(season.relative_sd),
            "season_months_used": int(season.months_used),
            "season_closed": [list(span) for span in season.closed],
            "rehearsal_cutoff": str(rehearsal.cutoff) if rehearsal.cutoff else None,
            "rehearsal_existing_scale": float(rehearsal.existing_scale),
            "rehearsal_new_scale": float(rehearsal.new_scale), "rehearsal_months": int(rehearsal.months),
        }, decision.reason, context=context)
    source = "ml.btyd_scores expected spend (BTYD)"
    if has_predicted:
        if predicted is None:  # per-customer summary (no ml.btyd_scores): predictions by customer id
            scores = conn.execute("select customer_id, predicted_spend from scores.customer_clv").df()
            predicted = scores.set_index(scores["customer_id"].astype(str))["predicted_spend"].astype(float)
        source = "scores.customer_clv.predicted_spend"
    result = revenue.forecast_revenue(
        None, cutoff, model=model, summary=summary, predicted_spend=predicted, horizon_days=horizon_days,
        season=season, rehearsal=rehearsal, firsts=firsts, gaps=unobserved_gaps(conn, until=cutoff),
    )
    table = result.table
    table.insert(0, "cutoff", cutoff)
    table.insert(5, "days", [(e - s).days + 1 for s, e in zip(table["period_start"], table["period_end"])])
    table["per_customer_source"] = source
    actuals = conn.execute(read_sql("clv_platform.marts", "sql/forecast_monthly_actuals.sql")).df()
    actuals = actuals.set_index(pd.to_datetime(actuals["month"]))["actual_revenue"]
    facts = {
        "cutoff": cutoff,
        "source": source,
        "summary_source": summary_source,
        "btyd_model_source": model_source,
        "fit": decision.metadata(fit_cutoff),
        "season": result.season,
        "acquisition": result.acquisition,
        "rehearsal": result.rehearsal,
        "actuals": actuals[actuals.index > pd.Timestamp(cutoff) - pd.DateOffset(months=24)],
        "predicted_total": float(predicted.reindex(summary.index).fillna(0).sum()) if predicted is not None else None,
    }
    return table, facts


def forecast_chart(history: pd.Series, table: pd.DataFrame) -> dict:
    """A Vega-Lite spec: monthly actuals, then the forecast with its 80 % band."""
    months = table[table["period_kind"] == "month"]
    values = [{"month": str(m.date()), "series": "actual", "revenue": round(float(v), 2)} for m, v in history.items()]
    values += [
        {"month": str(r.period_start), "series": "forecast", "revenue": round(float(r.total_revenue), 2),
         "low": round(float(r.total_revenue_low), 2), "high": round(float(r.total_revenue_high), 2)}
        for r in months.itertuples()
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "description": "Net revenue per month: last 24 months of actuals, then the forecast (80 % band).",
        "data": {"values": values},
        "encoding": {"x": {"field": "month", "type": "temporal", "timeUnit": "yearmonth"}},
        "layer": [
            {"mark": {"type": "area", "opacity": 0.2},
             "transform": [{"filter": "datum.series === 'forecast'"}],
             "encoding": {"y": {"field": "low", "type": "quantitative"}, "y2": {"field": "high"}}},
            {"mark": {"type": "line", "point": True},
             "encoding": {"y": {"field": "revenue", "type": "quantitative", "title": "net revenue"},
                          "color": {"field": "series", "type": "nominal"}}},
        ],
    }


def forecast_markdown(history: pd.Series, table: pd.DataFrame) -> str:
    """The last 24 months of actuals followed by the twelve forecast months, as a markdown table."""
    lines = ["| month | actual | forecast | 80 % low | 80 % high | existing | new |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {m:%Y-%m} | {v:,.0f} | | | | | |" for m, v in history.items()]
    for r in table[table["period_kind"] == "month"].itertuples():
        lines.append(
            f"| {r.period_start:%Y-%m-%d}..{r.period_end:%m-%d} | | {r.total_revenue:,.0f} | "
            f"{r.total_revenue_low:,.0f} | {r.total_revenue_high:,.0f} | {r.existing_revenue:,.0f} | "
            f"{r.new_revenue:,.0f} |"
        )
    return "\n".join(lines)


# Asset keys, declared once; each equals the DuckDB table the asset writes.
REVENUE_FORECAST = dg.AssetKey(["marts", "revenue_forecast"])
ACQUISITION_VALUE = dg.AssetKey(["marts", "acquisition_value"])


@dg.asset(
    key=REVENUE_FORECAST,
    group_name="marts",
    deps=[ORDERS, ORDER_HISTORY, BTYD_KEY, CUSTOMER_CLV],
    kinds={"python", "duckdb"},
    owners=OWNERS,
)
def revenue_forecast(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Net revenue for each of the next 12 months and the next 30/90/365 days, split into existing
    customers (per-customer predicted spend spread by the BTYD purchase curve and the store's
    seasonality) and new customers (acquisition forecast × first-order value + early repeat spend),
    each with an 80 % interval; metadata shows it beside the last 24 months of actuals.
    """
    from clv_platform.forecast import revenue

    settings = settings_of(duckdb)
    with duckdb.get_connection() as conn:
        table, facts = build_revenue_forecast(conn, context, settings.refit_after_days)
        rows = replace_table(conn, FORECAST_TABLE, table)
        contract.apply_comments(conn, tables=[FORECAST_TABLE])
        schema = contract.column_metadata(conn, FORECAST_TABLE)
    totals = table[table["period_kind"] == "total"].set_index("period")
    season = facts["season"]
    acquisition = facts["acquisition"]
    context.log.info(
        f"revenue forecast after {facts['cutoff']}: next 365 days {totals.loc['365d', 'total_revenue']:,.0f} "
        f"({totals.loc['365d', 'total_revenue_low']:,.0f}..{totals.loc['365d', 'total_revenue_high']:,.0f})"
    )
    metadata = {
        "dagster/row_count": rows,
        "cutoff": str(facts["cutoff"]),
        "per_customer_source": facts["source"],
        "btyd_summary_source": facts["summary_source"],
        "btyd_model_source": facts["btyd_model_source"],
        **facts["fit"],
        "forecast_vs_actuals": dg.MetadataValue.md(forecast_markdown(facts["actuals"], table)),
        "chart_vega_lite": dg.MetadataValue.json(forecast_chart(facts["actuals"], table)),
        "seasonal_index_jan_dec": dg.MetadataValue.json([round(float(v), 3) for v in season.index]),
        "existing_relative_sd": float(season.relative_sd),
        "rehearsal_cutoff": str(facts["rehearsal"].cutoff) if facts["rehearsal"].cutoff else "none",
        "rehearsal_existing_scale": float(facts["rehearsal"].existing_scale),
        "rehearsal_new_scale": float(facts["rehearsal"].new_scale),
        # what the intervals' systematic term rests on (forecast.revenue._relative_sd), in words
        "existing_interval_rule": revenue.interval_rule(season.relative_sd, facts["rehearsal"], "existing"),
        "new_interval_rule": revenue.interval_rule(acquisition.relative_sd, facts["rehearsal"], "new"),
        "new_customers_per_day_next_28d": float(acquisition.daily_mean[:28].mean()),
        "first_order_value": float(acquisition.first_order_value),
    }
    for period in ("30d", "90d", "365d"):
        for column in ("total_revenue", "total_revenue_low", "total_revenue_high", "existing_revenue", "new_revenue"):
            metadata[f"{period}_{column}"] = dg.MetadataValue.float(float(totals.loc[period, column]))
    return dg.MaterializeResult(metadata={**schema, **metadata})


# ----------------------------------------------------------------------------- acquisition value
def create_acquisition_clv_input(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Temp view acquisition_clv_input(customer_id, predicted_clv, p_alive, clv_p10, clv_p90).

    Per-customer CLV interval columns are read when the scores have them (under any name of
    ``_CLV_P10`` / ``_CLV_P90``), else null; returns what was missing.
    """
    if not table_exists(conn, "scores.customer_clv"):
        raise dg.Failure("scores.customer_clv does not exist: materialize the scores before marts/acquisition_value")
    present = _columns(conn, "scores.customer_clv")
    missing = []
    select = ["cast(customer_id as varchar) as customer_id", "cast(predicted_clv as double) as predicted_clv"]
    select.append("cast(p_alive as double) as p_alive" if "p_alive" in present else "null::double as p_alive")
    for alias, names in (("clv_p10", _CLV_P10), ("clv_p90", _CLV_P90)):
        found = next((n for n in names if n in present), None)
        if found is None:
            missing.append(alias)
            select.append(f"null::double as {alias}")
        else:
            select.append(f'cast("{found}" as double) as {alias}')
    conn.execute(f"create or replace temp view acquisition_clv_input as select {', '.join(select)} "
                 "from scores.customer_clv")
    return missing


def build_acquisition_value(conn: duckdb.DuckDBPyConnection, as_of) -> list[str]:
    missing = create_acquisition_clv_input(conn)
    run_script(conn, read_sql("clv_platform.marts", "sql/acquisition_value.sql"), {"as_of": as_of})
    contract.apply_comments(conn, tables=[ACQUISITION_TABLE])
    return missing


@dg.asset(
    key=ACQUISITION_VALUE,
    code_version=sql_code_version("clv_platform.marts", "sql/acquisition_value.sql"),
    group_name="marts",
    deps=[CUSTOMER_ACQUISITION, ORDER_HISTORY, CUSTOMER_CLV],
    kinds={"duckdb", "sql"},
    owners=OWNERS,
)
def acquisition_value(context: dg.AssetExecutionContext, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """Per first-order channel, campaign and discount code (per acquisition month and over all months):
    customers acquired, first-order value, 90-day repeat rate, mean and total predicted CLV with an
    80 % interval, and the share still alive. The campaign-effectiveness view.
    """
    with duckdb.get_connection() as conn:
        as_of = scoring_cutoff(conn)
        missing = build_acquisition_value(conn, as_of)
        rows = row_count(conn, ACQUISITION_TABLE)
        schema = contract.column_metadata(conn, ACQUISITION_TABLE)
        channels = conn.execute(
            """
            select channel, sum(customers) as customers, sum(total_predicted_clv) / sum(scored_customers)
                   as mean_predicted_clv, sum(repeat_rate_90d * customers_observable_90d)
                   / nullif(sum(customers_observable_90d), 0) as repeat_rate_90d
            from marts.acquisition_value where is_all_months group by channel order by mean_predicted_clv desc
            """
        ).df()
        top = conn.execute(
            "select channel, campaign, discount_code, customers, round(mean_predicted_clv, 2) as mean_clv, "
            "round(repeat_rate_90d, 3) as repeat_90d, round(share_alive, 3) as share_alive "
            "from marts.acquisition_value where is_all_months order by total_predicted_clv desc nulls last limit 10"
        ).df()
    if missing:
        context.log.warning(f"scores.customer_clv has no per-customer CLV interval ({', '.join(missing)}); "
                            "the mart's interval is the 80 % interval of each group's mean")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows,
        **schema,
        "as_of_date": str(as_of),
        "per_customer_interval_columns_missing": ", ".join(missing) or "none",
        "channels": dg.MetadataValue.md(channels.to_markdown(index=False, floatfmt=".3f")),
        "top_groups_by_total_clv": dg.MetadataValue.md(top.to_markdown(index=False)),
    })


FORECAST_MARTS = [revenue_forecast, acquisition_value]
