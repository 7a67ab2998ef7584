"""Segments: RFM rules applied exactly as configured, lifecycle thresholds, deterministic clusters."""

import copy

import numpy as np
import pandas as pd
import pytest

from clv_platform.models import segments


@pytest.fixture
def config():
    return segments.load_config()


def scores_frame(cells: list[tuple[int, int, int]]) -> pd.DataFrame:
    """Hand-built scores (R, F, M) with the FM score the module defines."""
    frame = pd.DataFrame(cells, columns=["r_score", "f_score", "m_score"])
    frame["fm_score"] = np.floor((frame["f_score"] + frame["m_score"]) / 2 + 0.5).astype(int)
    return frame


def test_quantile_scores_are_quintiles_with_deterministic_ties():
    values = pd.Series([10, 1, 9, 2, 8, 3, 7, 4, 6, 5])
    assert segments.quantile_scores(values).tolist() == [5, 1, 5, 1, 4, 2, 4, 2, 3, 3]
    assert segments.quantile_scores(values, reverse=True).tolist() == [1, 5, 1, 5, 2, 4, 2, 4, 3, 3]
    tied = pd.Series([0, 0, 0, 0, 0, 0, 3, 4, 5, 6])
    assert segments.quantile_scores(tied).tolist() == [1] * 6 + [4, 4, 5, 5]
    assert segments.quantile_scores(tied.iloc[::-1]).tolist() == ([1] * 6 + [4, 4, 5, 5])[::-1]


def test_rfm_scores_from_raw_columns(config):
    frame = pd.DataFrame(
        {
            "days_since_last_order": [1, 10, 100, 200, 300],
            "purchase_days": [9, 7, 5, 3, 1],
            "total_net_spend": [500.0, 400.0, 300.0, 200.0, 100.0],
        }
    )
    out = segments.rfm_segments(frame, config)
    assert out["r_score"].tolist() == [5, 4, 3, 2, 1]
    assert out["f_score"].tolist() == [5, 4, 3, 2, 1]
    assert out["rfm_cell"].tolist() == ["555", "444", "333", "222", "111"]
    assert out["rfm_segment"].tolist() == ["Champions", "Loyal", "Need attention", "Hibernating", "Lost"]


@pytest.mark.parametrize(
    ("cell", "segment"),
    [
        ((5, 5, 4), "Champions"),
        ((5, 1, 1), "New"),
        ((4, 1, 1), "Promising"),
        ((5, 3, 2), "Potential loyalist"),
        ((3, 5, 4), "Loyal"),
        ((3, 3, 3), "Need attention"),
        ((3, 1, 2), "About to sleep"),
        ((2, 5, 5), "Can't lose them"),
        ((1, 4, 3), "At risk"),
        ((1, 1, 1), "Lost"),
        ((1, 2, 1), "Hibernating"),
        ((2, 1, 1), "Hibernating"),
    ],
)
def test_default_rules(config, cell, segment):
    assert segments.assign_segments(scores_frame([cell]), config).iloc[0] == segment


def test_default_rules_cover_every_cell(config):
    cells = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    assigned = segments.assign_segments(scores_frame(cells), config)
    assert "Unclassified" not in set(assigned)
    assert set(assigned) == {rule["name"] for rule in config["rfm"]["segments"]}


def test_changing_the_config_changes_the_assignment(config):
    scores = scores_frame([(5, 5, 5), (5, 1, 1), (1, 1, 1)])
    assert segments.assign_segments(scores, config).tolist() == ["Champions", "New", "Lost"]

    vip_first = segments.with_rules(config, [{"name": "VIP", "m": [5, 5]}, *config["rfm"]["segments"]])
    assert segments.assign_segments(scores, vip_first).tolist() == ["VIP", "New", "Lost"]

    recent_only = segments.with_rules(config, [{"name": "Recent", "r": [5, 5]}])
    assert segments.assign_segments(scores, recent_only).tolist() == ["Recent", "Recent", "Unclassified"]

    reordered = copy.deepcopy(config)
    rules = reordered["rfm"]["segments"]
    rules.insert(0, rules.pop(next(i for i, r in enumerate(rules) if r["name"] == "Hibernating")))
    assert segments.assign_segments(scores, reordered).tolist() == ["Champions", "New", "Hibernating"]


def test_rules_from_a_toml_file(tmp_path, config):
    text = (
        (segments.resources.files("clv_platform.models") / "segments.toml")
        .read_text()
        .replace('name = "Champions"\nr = [5, 5]', 'name = "Stars"\nr = [4, 5]')
    )
    path = tmp_path / "segments.toml"
    path.write_text(text)
    custom = segments.load_config(path)
    scores = scores_frame([(4, 5, 5), (5, 5, 5)])
    assert segments.assign_segments(scores, config).tolist() == ["Loyal", "Champions"]
    assert segments.assign_segments(scores, custom).tolist() == ["Stars", "Stars"]


def test_invalid_rules_are_rejected(config):
    with pytest.raises(ValueError):
        segments.with_rules(config, [{"name": "Bad", "recency": [1, 2]}])
    with pytest.raises(ValueError):
        segments.with_rules(config, [{"name": "Bad", "r": [4, 2]}])


def lifecycle_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["new", "active", "risk", "churned", "one_timer"],
            "T_days": [30, 400, 400, 400, 400],
            "days_since_last_order": [25, 15, 25, 50, 130],
            "mean_interpurchase_days": [None, 10.0, 10.0, 10.0, None],
            "frequency": [0, 5, 5, 5, 0],
        }
    )


def test_lifecycle_stages_follow_the_cadence(config):
    frame = lifecycle_frame()
    ratio = segments.cadence_ratio(frame, config)
    assert ratio.tolist() == pytest.approx([2.5, 1.5, 2.5, 5.0, 13.0])
    stages = segments.lifecycle_stages(frame, config)
    assert stages.tolist() == ["new", "active", "at_risk", "churned", "churned"]


def test_lifecycle_thresholds_come_from_the_config(config):
    frame = lifecycle_frame()
    relaxed = copy.deepcopy(config)
    relaxed["lifecycle"].update(new_max_tenure_days=10, at_risk_min_ratio=3.0, churned_min_ratio=20.0)
    assert segments.lifecycle_stages(frame, relaxed).tolist() == ["active", "active", "active", "at_risk", "at_risk"]


def test_lifecycle_uses_probability_alive(config):
    frame = lifecycle_frame()
    # cadence ratios 2.5, 1.5, 2.5, 5.0, 13.0: the last two are overdue enough for churned, but the
    # model says they are probably still customers, so they are at risk (overdue), not churned
    stages = segments.lifecycle_stages(frame, config, p_alive=[0.1, 0.4, 0.9, 0.9, 0.9])
    assert stages.tolist() == ["new", "at_risk", "at_risk", "at_risk", "at_risk"]
    # where the model agrees (p_alive below 0.5) the cadence makes them churned; a low p_alive alone does
    stages = segments.lifecycle_stages(frame, config, p_alive=[0.9, 0.1, 0.9, 0.45, 0.3])
    assert stages.tolist() == ["new", "churned", "at_risk", "churned", "churned"]
    # an unknown p_alive leaves the cadence's verdict
    unknown = segments.lifecycle_stages(frame, config, p_alive=[float("nan")] * 5)
    assert unknown.tolist() == segments.lifecycle_stages(frame, config).tolist() == [
        "new", "active", "at_risk", "churned", "churned"]


def blobs(n_per_blob: int = 150, seed: int = 0) -> pd.DataFrame:
    """Four well-separated groups in log space: (recency, purchase days, AOV, spend)."""
    rng = np.random.default_rng(seed)
    centres = np.array(
        [
            [5.0, 12.0, 80.0, 900.0],  # recent, frequent, big spenders
            [10.0, 1.0, 20.0, 20.0],  # recent one-time buyers
            [300.0, 1.0, 15.0, 15.0],  # lapsed one-time low spenders
            [250.0, 4.0, 40.0, 160.0],  # lapsed repeaters
        ]
    )
    rows = centres.repeat(n_per_blob, axis=0) * np.exp(0.08 * rng.normal(size=(4 * n_per_blob, 4)))
    frame = pd.DataFrame(rows, columns=["days_since_last_order", "purchase_days", "avg_order_value", "total_net_spend"])
    frame["purchase_days"] = frame["purchase_days"].round().clip(lower=1)
    frame["frequency"] = frame["purchase_days"] - 1
    frame["clv"] = frame["total_net_spend"] * 0.5
    return frame


@pytest.fixture
def cluster_config(config):
    cfg = copy.deepcopy(config)
    cfg["clusters"].update(k_min=2, k_max=7, silhouette_sample_size=300, n_init=4)
    return cfg


def test_k_is_chosen_by_silhouette_and_clustering_is_deterministic(cluster_config):
    frame = blobs()
    first = segments.cluster_customers(frame, cluster_config, clv_col="clv")
    second = segments.cluster_customers(frame.sample(frac=1.0, random_state=1).sort_index(), cluster_config, "clv")
    assert first.k == 4
    assert first.k == max(first.silhouette, key=first.silhouette.get)
    assert first.labels.equals(second.labels)
    truth = np.repeat(np.arange(4), 150)
    assert pd.crosstab(first.labels, truth).gt(0).sum(axis=1).eq(1).all()


def test_cluster_summary_and_names(cluster_config):
    result = segments.cluster_customers(blobs(), cluster_config, clv_col="clv")
    summary = result.summary
    assert summary["customers"].sum() == 600
    assert summary["revenue_share"].sum() == pytest.approx(1.0)
    assert summary["mean_revenue"].is_monotonic_decreasing
    assert summary["mean_clv"].to_numpy() == pytest.approx(summary["mean_revenue"].to_numpy() * 0.5)
    assert summary["name"].tolist() == [
        "Recent high-value big-basket loyal buyers",
        "Lapsed low-spend repeat buyers",
        "Recent low-spend small-basket one-time buyers",
        "Lapsed low-spend small-basket one-time buyers",
    ]
    assert result.names.iloc[0] == "Recent high-value big-basket loyal buyers"


def test_name_rule():
    naming = segments.load_config()["clusters"]["naming"]
    population = {"revenue": 100.0, "recency": 100.0, "frequency": 2.0, "aov": 50.0}
    average = {"revenue": 90, "recency": 100, "frequency": 2.2, "aov": 50}
    assert segments.name_cluster(average, population, naming) == "Repeat buyers"
    lapsed_big = {"revenue": 300, "recency": 200, "frequency": 0.1, "aov": 300}
    assert segments.name_cluster(lapsed_big, population, naming) == "Lapsed high-value big-basket one-time buyers"
    recent_loyal = {"revenue": 100, "recency": 20, "frequency": 5, "aov": 20}
    assert segments.name_cluster(recent_loyal, population, naming) == "Recent small-basket loyal buyers"


def test_segment_customers_combines_everything(cluster_config):
    frame = blobs().assign(
        customer_id=lambda f: [f"c{i}" for i in range(len(f))],
        T_days=400,
        mean_interpurchase_days=lambda f: np.where(f["frequency"] > 0, 30.0, np.nan),
        p_alive=0.9,
    )
    out, clusters = segments.segment_customers(frame, cluster_config, p_alive_col="p_alive", clv_col="clv")
    assert list(out.columns) == [
        "customer_id", "r_score", "f_score", "m_score", "fm_score", "rfm_cell", "rfm_segment",
        "lifecycle_stage", "cluster", "cluster_name",
    ]
    assert out["customer_id"].tolist() == frame["customer_id"].tolist()
    assert set(out["lifecycle_stage"]) <= set(segments.STAGES)
    assert clusters.k == 4


def test_clusters_fitted_on_a_sample_assign_everyone(cluster_config):
    frame = blobs(n_per_blob=500)
    full = segments.cluster_customers(frame, cluster_config)
    sampled_config = copy.deepcopy(cluster_config)
    sampled_config["clusters"]["fit_sample_size"] = 400
    sampled = segments.cluster_customers(frame, sampled_config)
    assert sampled.k == full.k == 4
    assert len(sampled.labels) == len(frame) and sampled.labels.notna().all()
    assert (sampled.labels.to_numpy() == full.labels.to_numpy()).mean() > 0.99
    assert sampled.summary["customers"].sum() == len(frame)


def test_too_few_distinct_customers_to_split_are_one_cluster(cluster_config):
    """A store of one or two customers (or customers all alike) cannot be split into k >= 2
    clusters: it is one cluster with everybody in it and no silhouette, not a failed segmentation
    that leaves the store without marts."""
    frame = blobs(n_per_blob=1).iloc[:2]
    result = segments.cluster_customers(frame, cluster_config, clv_col="clv")
    assert (result.k, result.silhouette) == (1, {})
    assert result.labels.tolist() == [0, 0]
    assert result.summary["customers"].tolist() == [2]
    assert result.summary["mean_revenue"].iloc[0] == pytest.approx(frame["total_net_spend"].mean())
    params = segments.fit_clusters(frame.iloc[:1], cluster_config)
    assert params["k"] == 1 and len(params["centroids"]) == 1
    labels, names = segments.assign_clusters(frame, params)
    assert labels.tolist() == [0, 0] and names[0] == params["names"][0]
