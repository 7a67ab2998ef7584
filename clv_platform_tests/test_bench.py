"""The bench command on a tiny store: its references compute the same features as the SQL.

Not a benchmark (nothing here is timed against a target); it keeps `clv-platform bench`
working and its like-for-like claim true: both pandas references must agree with the SQL.
"""

from clv_platform.bench import format_report, run_bench


def test_bench_references_agree_with_the_sql_features():
    result = run_bench(400, source="synthetic", repeats=1, stages=[])

    assert result["orders"] > 400 and result["order_lines"] > result["orders"]
    assert result["feature_rows"] <= 400
    assert result["agreement"]["ok"], result["agreement"]
    assert result["agreement"]["max_abs_diff"] < 1e-6
    assert result["agreement_per_customer"]["ok"], result["agreement_per_customer"]
    stages = [s["stage"] for s in result["stages"]]
    assert stages == ["synthetic staging", "order history", "features"]
    assert result["references"]["order_history_s"] > 0
    assert result["references"]["duckdb_features_training_cutoff_s"] > 0
    # the refresh figures cover staging + features, not the set-up or the references
    assert abs(result["refresh_seconds"] - sum(s["seconds"] for s in result["stages"])) < 1e-9
    report = format_report([result])
    assert "full refresh" in report and "duckdb features / bare scan" in report
