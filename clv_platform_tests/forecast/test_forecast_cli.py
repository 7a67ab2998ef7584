"""`clv-platform backtest --dataset demo`: the revenue-forecast backtest from the command line."""

import json

from clv_platform import backtest_cli


def test_demo_forecast_backtest_prints_json_and_writes_the_report(tmp_path, capsys):
    report = tmp_path / "forecast.html"
    assert backtest_cli.main(["--dataset", "demo", "--json", "--report", str(report)]) == 0
    out = json.loads(capsys.readouterr().out)["forecast"]
    assert out["dataset"] == "demo" and out["cutoff"] == "2025-10-31"
    assert len(out["months"]) == 12 and out["summary"]["beats_baseline"] is True
    text = report.read_text(encoding="utf-8")
    assert "Revenue forecast backtest: demo" in text and "<svg" in text and "seasonal naive" in text


def test_forecast_cutoff_errors_are_clear(capsys):
    assert backtest_cli.main(["--dataset", "demo", "--forecast-cutoff", "2025-10-15"]) == 2
    assert "must be a month end" in capsys.readouterr().err
