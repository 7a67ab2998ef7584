"""The data contract (descriptions -> column schema + DuckDB comments), report links and pruning,
float metrics for the Plots tab, the ml.model_registry view and the demo's progress loggers."""

import io
import json
import math
from datetime import datetime

import dagster as dg
import duckdb
import pytest

from clv_platform import contract
from clv_platform.models import clv
from clv_platform.models.registry_view import create_model_registry_view
from clv_platform.reports import float_metrics, prune_reports, report_url


# ----------------------------------------------------------------------------- contract


def test_contract_fills_horizon_and_discount_from_clv_toml():
    config = clv.load_config()
    text = contract.describe("marts.customer_scores", "predicted_clv")
    assert f"{config.horizon_days} days" in text
    assert f"{config.annual_discount_rate:.0%} a year" in text and "shop currency" in text
    assert "{" not in text
    assert f"{config.horizon_days} days" in contract.describe("marts.customer_scores", "expected_purchases")
    assert "scoring cutoff" in contract.describe("scores.customer_clv", "p_alive")


def test_contract_states_the_tier_bands_used_by_the_scores():
    text = contract.describe("scores.customer_clv", "clv_tier")
    for label, _ in clv.TIERS:
        assert f"'{label}'" in text
    assert f"'{clv.REST}'" in text


def test_column_schema_and_comments_follow_the_contract(tmp_path):
    with duckdb.connect(str(tmp_path / "c.duckdb")) as conn:
        conn.execute("create schema scores")
        conn.execute(
            "create table scores.customer_clv as select 'c1' as customer_id, 1.5::double as predicted_clv, "
            "42 as not_in_contract"
        )
        written = contract.apply_comments(conn, tables=["scores.customer_clv"])
        schema = contract.column_schema(conn, "scores.customer_clv")
        comments = dict(conn.execute(
            "select column_name, comment from duckdb_columns() where table_name = 'customer_clv'"
        ).fetchall())
        table_comment = conn.execute("select comment from duckdb_tables() where table_name = 'customer_clv'").fetchone()[0]
        assert contract.undescribed(conn, "scores.customer_clv") == ["not_in_contract"]
    assert written == 2
    assert [(c.name, c.type) for c in schema.columns] == [
        ("customer_id", "varchar"), ("predicted_clv", "double"), ("not_in_contract", "integer")
    ]
    described = {c.name: c.description for c in schema.columns}
    assert described["predicted_clv"] == contract.describe("scores.customer_clv", "predicted_clv")
    assert described["not_in_contract"] == contract.UNDESCRIBED
    assert comments["predicted_clv"] == described["predicted_clv"]
    assert comments["not_in_contract"] is None
    assert table_comment == contract.table_contract("scores.customer_clv").description


def test_comments_are_one_commit_or_join_the_callers_transaction(tmp_path):
    """apply_comments writes all comments in one transaction of its own; inside a caller's open
    transaction (own_transaction=False) it joins it, so a rollback of the caller drops them with the rest."""
    with duckdb.connect(str(tmp_path / "c.duckdb")) as conn:
        conn.execute("create schema scores")
        conn.execute("create table scores.customer_clv as select 'c1' as customer_id, 1.5::double as predicted_clv")

        def comment():
            return conn.execute("select comment from duckdb_columns() where table_name = 'customer_clv' "
                                "and column_name = 'predicted_clv'").fetchone()[0]

        conn.execute("begin transaction")
        assert contract.apply_comments(conn, tables=["scores.customer_clv"], own_transaction=False) == 2
        assert comment() == contract.describe("scores.customer_clv", "predicted_clv")
        conn.execute("rollback")
        assert comment() is None
        assert contract.apply_comments(conn, tables=["scores.customer_clv"]) == 2
        conn.execute("begin transaction")  # no transaction was left open by it
        conn.execute("rollback")
        assert comment() == contract.describe("scores.customer_clv", "predicted_clv")


# ----------------------------------------------------------------------------- reports


def test_report_url_points_at_the_served_folder(data_env, monkeypatch):
    monkeypatch.setenv("CLV_REPORTS_URL", "http://127.0.0.1:3999/")
    report = data_env / "reports" / "drift_20250101T000000.html"
    assert report_url(report) == "http://127.0.0.1:3999/drift_20250101T000000.html"
    assert report_url(data_env / "reports") == "http://127.0.0.1:3999/"  # the folder listing
    with pytest.raises(ValueError, match="not inside the served reports folder"):
        report_url(data_env / "elsewhere.html")


def test_prune_keeps_the_newest_of_one_kind_and_nothing_else(data_env):
    folder = data_env / "reports"
    folder.mkdir()
    drift = [folder / f"drift_2025010{i}T000000.html" for i in range(1, 8)]
    others = [folder / "clv_explainability_20250101T000000Z.html", folder / "drift_notes.txt", folder / "mine.html"]
    for path in drift + others:
        path.write_text("x")
    removed = prune_reports("drift_", keep=3)
    assert sorted(removed) == drift[:4]
    assert sorted(p for p in folder.iterdir()) == sorted(drift[4:] + others)
    assert prune_reports("drift_", keep=3) == []
    with pytest.raises(ValueError):
        prune_reports("drift_", keep=0)
    with pytest.raises(ValueError):
        prune_reports("", keep=1)


def test_retention_setting_is_read_and_validated(data_env, monkeypatch):
    folder = data_env / "reports"
    folder.mkdir()
    for i in range(4):
        (folder / f"drift_{i}.html").write_text("x")
    monkeypatch.setenv("CLV_REPORT_RETENTION", "2")
    assert [p.name for p in prune_reports("drift_")] == ["drift_0.html", "drift_1.html"]
    monkeypatch.setenv("CLV_REPORT_RETENTION", "0")
    with pytest.raises(ValueError, match="CLV_REPORT_RETENTION"):
        prune_reports("drift_")


def test_float_metrics_flattens_numbers_and_drops_what_cannot_be_plotted():
    metrics = {"mae": 12.5, "n": 3, "auc_30d": float("nan"), "flag": True, "name": "x",
               "by_tier": {"rmse": 2.0, "inf": math.inf}}
    assert float_metrics(metrics, prefix="validation_") == {
        "validation_mae": 12.5, "validation_n": 3.0, "validation_by_tier_rmse": 2.0
    }
    assert float_metrics(None) == {}


# ----------------------------------------------------------------------------- registry view


def test_model_registry_view_marks_served_registered_and_candidates(tmp_path):
    with duckdb.connect(str(tmp_path / "r.duckdb")) as conn:
        assert create_model_registry_view(conn) is False
        conn.execute("create schema ml")
        conn.execute(
            "create table ml.model_runs (model_name varchar, model_version varchar, trained_at timestamp, "
            "cutoff date, horizon_days integer, objective varchar, n_train bigint, metrics json, path varchar, "
            "is_registered boolean)"
        )
        rows = [
            ("clv_xgb", "v1", datetime(2025, 1, 1), True, {"mae": 10.0, "normalized_gini": 0.5}),
            ("clv_xgb", "v2", datetime(2025, 2, 1), True, {"mae": 9.0, "normalized_gini": 0.6}),
            ("clv_xgb", "v3", datetime(2025, 3, 1), False, {"mae": 20.0, "normalized_gini": 0.1}),
            ("npd_aft", "n1", datetime(2025, 3, 1), True, {"auc_30d": 0.7}),
        ]
        for name, version, trained_at, registered, metrics in rows:
            conn.execute(
                "insert into ml.model_runs values (?, ?, ?, date '2025-01-01', 365, 'tweedie', 10, ?, 'p', ?)",
                [name, version, trained_at, json.dumps(metrics), registered],
            )
        # a column added later (e.g. by a unified registry) is kept, not an error
        conn.execute("alter table ml.model_runs add column interval_coverage double")
        assert create_model_registry_view(conn) is True
        view = conn.execute("select * from ml.model_registry").df()
    status = dict(zip(view["model_version"], view["status"]))
    assert status == {"v1": "registered", "v2": "served", "v3": "candidate", "n1": "served"}
    assert dict(zip(view["model_version"], view["mae"]))["v2"] == 9.0
    assert view.set_index("model_version").loc["n1", "mae"] != view.set_index("model_version").loc["n1", "mae"]
    assert "interval_coverage" in view.columns and "is_registered" in view.columns


# ----------------------------------------------------------------------------- demo progress


def test_demo_loggers_print_one_line_per_asset_and_keep_the_full_log(tmp_path):
    from clv_platform.cli import demo_loggers

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["a", "b", "c"]))
    def first() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"dagster/row_count": 1234})

    @dg.asset(deps=[first])
    def second(context: dg.AssetExecutionContext) -> None:
        context.log.info("a detail only the log file needs")

    out = io.StringIO()
    log_path = tmp_path / "demo.log"
    loggers = demo_loggers(log_path, out=out)
    job = dg.Definitions(assets=[first, second], jobs=[dg.define_asset_job("all")]).resolve_job_def("all")
    # one run over all three partitions (as the demo runs raw/shopify_orders over every day)
    result = job.with_logger_defs(loggers).execute_in_process(
        run_config={"loggers": {name: {} for name in loggers}}, instance=dg.DagsterInstance.ephemeral(),
        tags={"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "c"},
    )
    assert result.success
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].split()[1:] == ["done", "first", "1,234", "rows", "(3", "partitions)"]
    assert lines[1].split()[1:] == ["done", "second"]
    log = log_path.read_text(encoding="utf-8")
    assert "a detail only the log file needs" in log
    assert "a detail only the log file needs" not in out.getvalue()
    assert len(log.splitlines()) > 10  # every Dagster event of the run, not just the progress lines


def test_demo_run_is_recorded_under_the_ui_code_location(tmp_path):
    """The Overview timeline only draws runs of a loaded code location: the demo run names it."""
    from clv_platform.cli import _runs_with_ui_origin

    @dg.asset
    def only() -> None:
        return None

    job = dg.Definitions(assets=[only], jobs=[dg.define_asset_job("refresh_everything")]).resolve_job_def(
        "refresh_everything"
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        _runs_with_ui_origin(instance, job.name)
        result = job.execute_in_process(instance=instance)
        run = instance.get_run_by_id(result.run_id)
    assert result.success
    origin = run.remote_job_origin
    assert origin is not None and origin.job_name == "refresh_everything"
    assert origin.location_name == "clv_platform"  # workspace.yaml's location_name
    assert origin.repository_origin.repository_name == "__repository__"
