"""The customer-scores export's formats and retention (store.toml [exports]): nothing is deleted
unless the store asks for it, and then only the export files of the oldest scoring dates."""

from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest

from clv_platform.marts.assets import customer_scores_export
from clv_platform.marts.exports import dated_exports, prune_exports
from clv_platform.resources.storage import StorageResource
from clv_platform.settings import SettingsError, load_settings, with_database


def _store(tmp_path, exports_toml: str = ""):
    (tmp_path / "store.toml").write_text(exports_toml)
    settings = load_settings({"CLV_DATA_DIR": str(tmp_path)})
    database = tmp_path / "clv.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.customer_scores (customer_id varchar, clv_rank integer, scored_at timestamp)")
    return settings, database


def _score_on(database, day: str, customers: int = 3):
    with duckdb.connect(str(database)) as conn:
        conn.execute("delete from marts.customer_scores")
        conn.execute("insert into marts.customer_scores select 'c' || i, i, ?::timestamp + interval 6 hour "
                     "from range(1, ?) as t(i)", [day, customers + 1])


def _export(settings):
    storage = StorageResource.from_settings(with_database(settings, settings.data_dir / "clv.duckdb"))
    result = dg.materialize([customer_scores_export], resources={"duckdb": storage},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result.get_asset_materialization_events()[0].materialization.metadata


def _names(settings):
    return sorted(p.name for p in settings.export_dir.iterdir())


def test_every_scoring_date_stays_by_default(tmp_path):
    settings, database = _store(tmp_path)
    assert settings.export_formats == ("parquet", "csv") and settings.export_keep_dates == 0
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        _score_on(database, day)
        metadata = _export(settings)
    assert len(_names(settings)) == 6
    assert metadata["files_deleted"].value == 0 and metadata["export_files_on_disk"].value == 6


def test_keep_dates_deletes_only_the_oldest_dates_export_files(tmp_path):
    settings, database = _store(tmp_path, "[exports]\nkeep_dates = 2\n")
    settings.export_dir.mkdir(parents=True)
    # files the export did not write are never touched, even when their names look alike
    for other in ("customer_scores_2020-01-01.xlsx", "notes.txt", "customer_scores_2020-13-45.csv"):
        (settings.export_dir / other).write_text("the user's own")
    for day, customers in (("2026-11-01", 3), ("2026-11-02", 4), ("2026-11-03", 5)):
        _score_on(database, day, customers)
        metadata = _export(settings)
    assert _names(settings) == ["customer_scores_2020-01-01.xlsx", "customer_scores_2020-13-45.csv",
                                "customer_scores_2026-11-02.csv", "customer_scores_2026-11-02.parquet",
                                "customer_scores_2026-11-03.csv", "customer_scores_2026-11-03.parquet", "notes.txt"]
    assert metadata["files_deleted"].value == 2
    assert metadata["deleted"].value == ["customer_scores_2026-11-01.csv", "customer_scores_2026-11-01.parquet"]
    assert metadata["export_files_on_disk"].value == 4
    assert len(pd.read_parquet(settings.export_dir / "customer_scores_2026-11-03.parquet")) == 5
    assert len(pd.read_parquet(settings.export_dir / "customer_scores_2026-11-02.parquet")) == 4


def test_a_rerun_of_an_older_date_keeps_the_date_it_wrote(tmp_path):
    settings, _ = _store(tmp_path)
    folder = settings.export_dir
    folder.mkdir(parents=True)
    for day in ("2026-11-01", "2026-11-02", "2026-11-03"):
        (folder / f"customer_scores_{day}.parquet").write_text("x")
    deleted = prune_exports(folder, 1, date(2026, 11, 1))
    assert [p.name for p in deleted] == ["customer_scores_2026-11-02.parquet"]
    assert sorted(dated_exports(folder)) == [date(2026, 11, 1), date(2026, 11, 3)]


def test_parquet_only_writes_no_csv_and_replaces_the_dates_earlier_csv(tmp_path):
    settings, database = _store(tmp_path)
    _score_on(database, "2026-11-02")
    _export(settings)
    assert _names(settings) == ["customer_scores_2026-11-02.csv", "customer_scores_2026-11-02.parquet"]
    (tmp_path / "store.toml").write_text('[exports]\nformats = ["parquet"]\n')
    parquet_only = load_settings({"CLV_DATA_DIR": str(tmp_path)})
    assert parquet_only.export_formats == ("parquet",)
    _score_on(database, "2026-11-02", customers=7)
    metadata = _export(parquet_only)
    # the date's CSV held the earlier run's 3 customers: it would contradict the new Parquet
    assert _names(parquet_only) == ["customer_scores_2026-11-02.parquet"]
    assert metadata["formats"].value == "parquet" and "csv_path" not in metadata
    assert len(pd.read_parquet(parquet_only.export_dir / "customer_scores_2026-11-02.parquet")) == 7


@pytest.mark.parametrize("toml, message", [
    ('[exports]\nformats = []\n', "formats must be a non-empty list"),
    ('[exports]\nformats = ["xlsx"]\n', "formats must be a non-empty list"),
    ('[exports]\nformats = ["csv", "csv"]\n', "formats must be a non-empty list"),
    ('[exports]\nkeep_dates = -1\n', "keep_dates must be a whole number"),
    ('[exports]\nkeep_dates = "7"\n', "keep_dates must be a whole number"),
    ('[exports]\nkeep = 7\n', r"unknown keys \['keep'\]"),
])
def test_export_settings_are_checked(tmp_path, toml, message):
    (tmp_path / "store.toml").write_text(toml)
    with pytest.raises(SettingsError, match=message):
        load_settings({"CLV_DATA_DIR": str(tmp_path)})


def test_the_csv_rounds_doubles_to_six_decimals_and_the_parquet_keeps_them(tmp_path):
    """A double of the mart in the CSV: 17 significant digits of noise would cost a third of the write
    at 1M customers; six decimals are kept (a probability of 3e-7 reads 0.0), other types as they are."""
    settings, database = _store(tmp_path)
    with duckdb.connect(str(database)) as conn:
        conn.execute("alter table marts.customer_scores add column p_alive double")
        conn.execute("alter table marts.customer_scores add column predicted_clv double")
        conn.execute("alter table marts.customer_scores add column segment varchar")
        conn.execute("insert into marts.customer_scores values "
                     "('c1', 1, '2026-11-02 06:00', 0.9086699666750278, 16464.2, 'Champions'), "
                     "('c2', 2, '2026-11-02 06:00', 3e-7, 0.1, 'At risk, \"lapsed\"'), "
                     "('c3', 3, '2026-11-02 06:00', null, 12.345678951, null)")
    _export(settings)
    lines = (settings.export_dir / "customer_scores_2026-11-02.csv").read_text().splitlines()
    assert lines == [
        "customer_id,clv_rank,scored_at,p_alive,predicted_clv,segment",
        "c1,1,2026-11-02 06:00:00,0.90867,16464.2,Champions",
        'c2,2,2026-11-02 06:00:00,0.0,0.1,"At risk, ""lapsed"""',
        "c3,3,2026-11-02 06:00:00,,12.345679,",
    ]
    parquet = pd.read_parquet(settings.export_dir / "customer_scores_2026-11-02.parquet")
    assert parquet["p_alive"].tolist()[:2] == [0.9086699666750278, 3e-7]
    assert parquet["predicted_clv"].tolist()[2] == 12.345678951
