"""scores/customer_segments at night: the stored clustering is assigned, store-wide RFM ranks come
from SQL, customers go through in batches; the result equals the whole-frame pandas segmentation."""

import shutil
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from dagster_duckdb import DuckDBResource

from clv_platform.models import segments, stored_fits
from clv_platform.models.segment_assets import SEGMENT_COLUMNS, customer_segments, write_segments
from clv_platform.transforms.cutoff import scoring_cutoff
from clv_platform.transforms.features import FEATURE_TABLE, materialize_features
from clv_platform_tests.dagster_events import materialization_metadata

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "marts"))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    from test_marts import build_demo_warehouse

    path = tmp_path_factory.mktemp("segments") / "clv.duckdb"
    build_demo_warehouse(path, customers=800)
    with duckdb.connect(str(path)) as conn:
        materialize_features(conn, scoring_cutoff(conn))
    return path


def _meta(result):
    return materialization_metadata(result, ("scores", "customer_segments"))


def _segments(database):
    with duckdb.connect(str(database), read_only=True) as conn:
        return (conn.execute("select * from scores.customer_segments order by customer_id").df(),
                conn.execute("select * from ml.cluster_summary order by cluster").df())


def test_segments_equal_the_whole_frame_pandas_segmentation(warehouse, tmp_path):
    database = tmp_path / "clv.duckdb"
    shutil.copy(warehouse, database)
    first = _meta(dg.materialize([customer_segments], resources={"duckdb": DuckDBResource(database=str(database))}))
    assert first["fit"] == "refitted" and first["fit_reason"] == "no stored fit"
    table, summary = _segments(database)
    config = segments.load_config()
    with duckdb.connect(str(database), read_only=True) as conn:
        frame = conn.execute(f"""select f.*, c.p_alive, c.predicted_clv from {FEATURE_TABLE} as f
                                 left join scores.customer_clv as c using (customer_id) order by f.customer_id""").df()
    expected, clusters = segments.segment_customers(frame, config, p_alive_col="p_alive", clv_col="predicted_clv")
    assert list(table.columns) == SEGMENT_COLUMNS and len(table) == len(frame)
    assert (table["customer_id"].to_numpy() == frame["customer_id"].to_numpy()).all()
    for column in ("r_score", "f_score", "m_score", "fm_score", "rfm_cell", "rfm_segment", "lifecycle_stage",
                   "cluster_name"):
        assert (table[column].to_numpy() == expected[column].to_numpy()).all(), column
    assert (table["cluster_id"].to_numpy() == expected["cluster"].to_numpy()).all()
    # the SQL summary is the pandas one
    pd.testing.assert_frame_equal(
        summary.drop(columns=["index"]).reset_index(drop=True),
        clusters.summary[summary.columns.drop("index")].reset_index(drop=True),
        check_dtype=False, rtol=1e-9)
    assert set(table["r_score"]) == {1, 2, 3, 4, 5}


def test_nightly_segments_reuse_the_clustering_batches_equal_one_pass_and_a_stale_fit_is_refitted(
        warehouse, tmp_path):
    database = tmp_path / "clv.duckdb"
    shutil.copy(warehouse, database)
    resources = {"duckdb": DuckDBResource(database=str(database))}
    dg.materialize([customer_segments], resources=resources)
    refit_table, refit_summary = _segments(database)

    again = _meta(dg.materialize([customer_segments], resources=resources))
    assert again["fit"] == "reused" and again["fit_age_days"] == 0 and again["batches"] == 1
    table, summary = _segments(database)
    pd.testing.assert_frame_equal(table, refit_table)  # idempotent: same rows, same values
    pd.testing.assert_frame_equal(summary, refit_summary)

    # the assignment follows the stored centroids, not a refit: move one centroid far away, nobody is in it
    config = segments.load_config()
    with duckdb.connect(str(database)) as conn:
        params = stored_fits.load(conn, stored_fits.SEGMENTS).params
        cutoff = scoring_cutoff(conn)
        customers = conn.execute(f"select count(*) from {FEATURE_TABLE}").fetchone()[0]
        batched = write_segments(conn, config, params, batch=97)
        assert batched["batches"] == -(-customers // 97) and batched["rows"] == customers
        in_batches = conn.execute("select * from scores.customer_segments order by customer_id").df()
        pd.testing.assert_frame_equal(in_batches, refit_table)
        moved = dict(params, centroids=[[1e6] * len(params["features"])] + params["centroids"][1:])
        write_segments(conn, config, moved, batch=10**9)
        assigned = {row[0] for row in conn.execute("select distinct cluster_id from scores.customer_segments").fetchall()}
        assert 0 not in assigned and len(assigned) == len(params["centroids"]) - 1
        conn.execute("update ml.stored_fits set fit_cutoff = ? where component = 'segments'",
                     [cutoff - timedelta(days=9)])
    stale = _meta(dg.materialize([customer_segments], resources=resources))
    assert stale["fit"] == "refitted" and "9 days old" in stale["fit_reason"]
    pd.testing.assert_frame_equal(_segments(database)[0], refit_table)
    assert np.isclose(refit_summary["customer_share"].sum(), 1.0)
