"""Customer segments: RFM scores and named segments, lifecycle stages, behavioural clusters.

All thresholds and rules live in ``segments.toml`` next to this module (parsed with
``tomllib``), so marketing can change a segment definition without touching code; every
function takes the parsed config (``load_config()``) and falls back to the shipped one.

* RFM: quintile scores 1-5 from percentile ranks. Ties take the *lowest* rank of their group
  (``rank(method="min")``), so equal values always get equal scores whatever the row order,
  and the smallest value always scores 1. Recency is reversed (most recent = 5). Named
  segments are ranges of R, F, M and FM (= round-half-up of (F + M) / 2) tried in config order;
  the first match wins.
* Lifecycle: the one rule of ``lifecycle.py`` (re-exported here), shared with the backtest.
* Clusters: KMeans on standardized log1p features (spend and counts are heavy-tailed; without
  the log a few big spenders would be their own clusters). k maximizes the silhouette over the
  configured range, computed on a seeded fixed-size sample for speed; ties go to the smaller k.
  On large bases the centroids are fitted on a seeded sample of ``fit_sample_size`` rows (4
  standardized features: 100k rows pin the centroids as well as a million) and every customer is
  assigned to the nearest centroid; smaller bases are fitted on all rows.
  Clusters are numbered by mean revenue, highest first, and named from their profile
  (``name_cluster``). ``fit_clusters`` turns a clustering into stored parameters (scaler,
  centroids, names) and ``assign_clusters`` labels customers with them, so the nightly run
  assigns without refitting (``segment_assets``).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from clv_platform.models.lifecycle import STAGES, cadence_ratio, lifecycle_stages  # noqa: F401 (the one rule)

RULE_KEYS = ("r", "f", "m", "fm")
SCORE_COLUMNS = {"r": "r_score", "f": "f_score", "m": "m_score", "fm": "fm_score"}


def load_config(path: str | Path | None = None) -> dict:
    """Parse a segments TOML file (default: the ``segments.toml`` shipped with the package)."""
    if path is None:
        text = resources.files("clv_platform.models").joinpath("segments.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _config(config: dict | None) -> dict:
    return load_config() if config is None else config


def quantile_scores(values: pd.Series, bins: int = 5, reverse: bool = False) -> pd.Series:
    """Scores 1..bins = ceil(bins x percentile rank); ties share the lowest rank of their group.

    Missing values score 1 (nothing known is no evidence of a good customer).
    """
    numeric = pd.to_numeric(values, errors="coerce").astype(float)
    ranked = (-numeric if reverse else numeric).rank(method="min", pct=True)
    scores = np.ceil(ranked * bins).clip(1, bins)
    return scores.fillna(1).astype(int)


def rfm_scores(frame: pd.DataFrame, config: dict | None = None) -> pd.DataFrame:
    """``r_score``, ``f_score``, ``m_score``, ``fm_score`` and the ``rfm_cell`` string ("543")."""
    rfm = _config(config)["rfm"]
    bins = int(rfm.get("bins", 5))
    out = pd.DataFrame(
        {
            "r_score": quantile_scores(frame[rfm["recency_column"]], bins, reverse=True),
            "f_score": quantile_scores(frame[rfm["frequency_column"]], bins),
            "m_score": quantile_scores(frame[rfm["monetary_column"]], bins),
        },
        index=frame.index,
    )
    out["fm_score"] = np.floor((out["f_score"] + out["m_score"]) / 2 + 0.5).astype(int)
    out["rfm_cell"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    return out


def _validated_rules(rules: list[dict]) -> list[dict]:
    for rule in rules:
        unknown = set(rule) - {"name", *RULE_KEYS}
        if "name" not in rule or unknown:
            raise ValueError(f"segment rule {rule!r}: needs a name and only the keys {RULE_KEYS}")
        for key in RULE_KEYS:
            bounds = rule.get(key)
            if bounds is not None and (len(bounds) != 2 or bounds[0] > bounds[1]):
                raise ValueError(f"segment rule {rule['name']!r}: {key} must be [min, max], got {bounds!r}")
    return rules


def assign_segments(scores: pd.DataFrame, config: dict | None = None) -> pd.Series:
    """Named segment per row from ``rfm_scores`` output: the first matching rule wins."""
    rfm = _config(config)["rfm"]
    rules = _validated_rules(rfm.get("segments", []))
    conditions = []
    for rule in rules:
        match = np.ones(len(scores), dtype=bool)
        for key in RULE_KEYS:
            if key in rule:
                low, high = rule[key]
                column = scores[SCORE_COLUMNS[key]].to_numpy()
                match &= (column >= low) & (column <= high)
        conditions.append(match)
    names = [rule["name"] for rule in rules]
    default = rfm.get("default_segment", "Unclassified")
    labels = np.select(conditions, names, default=default) if conditions else np.full(len(scores), default)
    return pd.Series(labels, index=scores.index, name="rfm_segment", dtype=object)


def rfm_segments(frame: pd.DataFrame, config: dict | None = None) -> pd.DataFrame:
    """RFM scores plus the named ``rfm_segment``."""
    config = _config(config)
    scores = rfm_scores(frame, config)
    scores["rfm_segment"] = assign_segments(scores, config)
    return scores


@dataclass(frozen=True)
class ClusterResult:
    """Cluster per customer (0 = highest mean revenue), its name, and how k was chosen."""

    labels: pd.Series
    names: pd.Series
    k: int
    silhouette: dict[int, float]
    summary: pd.DataFrame
    centroids: np.ndarray | None = None
    """KMeans centroids in cluster-id order, in the standardized log1p space of ``scaler``."""
    scaler: StandardScaler | None = None


def log_matrix(frame: pd.DataFrame, feature_cols: list[str]) -> np.ndarray:
    """log1p of the features; nulls become 0 and negatives are clipped to 0."""
    raw = frame[list(feature_cols)].apply(pd.to_numeric, errors="coerce").astype(float)
    return np.log1p(raw.fillna(0.0).clip(lower=0.0).to_numpy())


def cluster_matrix(frame: pd.DataFrame, feature_cols: list[str]) -> np.ndarray:
    """Standardized log1p of the features; nulls become 0 and negatives are clipped to 0."""
    return StandardScaler().fit_transform(log_matrix(frame, feature_cols))


def choose_k(
    x: np.ndarray, k_values, seed: int = 0, n_init: int = 10, sample_size: int = 5000, fit_sample_size: int = 0
):
    """Fit KMeans for each k and score the silhouette on one seeded sample of rows.

    The same sample is used for every k so the scores are comparable. With ``fit_sample_size``
    (0 = all rows) smaller than the data, each k is fitted on one seeded sample of that many rows
    and the labels of every row are its nearest centroid. Returns ``(best_k, {k: silhouette},
    {k: labels})`` with the labels of the best k only (others are not needed and cost a pass
    over all rows each) and, under ``"model"``, the fitted KMeans of the best k (its centroids are what
``fit_clusters`` stores); k values that need more distinct points than the data has are skipped,
    and when none is left (fewer than three distinct points) the result is one cluster (k = 1)
    with no silhouette scores.
    """
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(x), size=min(sample_size, len(x)), replace=False))
    if fit_sample_size and len(x) > fit_sample_size:
        fit_rows = np.sort(np.random.default_rng(seed + 1).choice(len(x), size=fit_sample_size, replace=False))
        fit_x = x[fit_rows]
    else:
        fit_x = x
    n_distinct = len(np.unique(fit_x, axis=0))
    ks = [int(k) for k in k_values if 2 <= k < min(n_distinct, len(fit_x))]
    if not ks:
        # Too few distinct customers to split (a store of one or two customers, or all alike): one
        # cluster, everybody in it, and no silhouette (it needs two clusters). A failed segmentation
        # would leave the store without its marts for want of a grouping nobody can make.
        model = KMeans(n_clusters=1, random_state=seed, n_init=1).fit(fit_x)
        return 1, {}, {1: np.zeros(len(x), dtype=np.int32), "model": model}
    scores, models = {}, {}
    for k in ks:
        models[k] = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(fit_x)
        sample_labels = models[k].predict(x[sample])
        if len(np.unique(sample_labels)) < 2:
            scores[k] = float("-inf")
            continue
        scores[k] = float(silhouette_score(x[sample], sample_labels))
    best = max(ks, key=lambda k: (scores[k], -k))
    return best, scores, {best: models[best].predict(x), "model": models[best]}


def name_cluster(profile: dict, population: dict, naming: dict) -> str:
    """Readable name = recency + value + basket words + frequency noun, from ratios to the population.

    * recency: "Recent" if mean days since last order <= ``recent_max_ratio`` x population,
      "Lapsed" if >= ``lapsed_min_ratio`` x population, else nothing;
    * value (mean revenue per customer): "high-value" if >= ``high_value_min_ratio`` x
      population, "low-spend" if <= ``low_value_max_ratio`` x population, else nothing;
    * basket (mean order value): "big-basket" if >= ``big_basket_min_ratio`` x population,
      "small-basket" if <= ``small_basket_max_ratio`` x population, else nothing;
    * frequency (mean repeat purchase days): "one-time buyers" if below
      ``one_time_max_frequency``, "loyal buyers" if >= ``loyal_min_ratio`` x population, else
      "repeat buyers".
    e.g. "Recent one-time buyers", "High-value loyal buyers", "Lapsed low-spend one-time buyers".
    Means, not medians, so a cluster's share of revenue and its name tell the same story.
    """

    def ratio(key: str) -> float:
        base = population[key]
        return profile[key] / base if base > 0 else 1.0

    words = []
    if ratio("recency") <= naming["recent_max_ratio"]:
        words.append("recent")
    elif ratio("recency") >= naming["lapsed_min_ratio"]:
        words.append("lapsed")
    if ratio("revenue") >= naming["high_value_min_ratio"]:
        words.append("high-value")
    elif ratio("revenue") <= naming["low_value_max_ratio"]:
        words.append("low-spend")
    if ratio("aov") >= naming["big_basket_min_ratio"]:
        words.append("big-basket")
    elif ratio("aov") <= naming["small_basket_max_ratio"]:
        words.append("small-basket")
    if profile["frequency"] < naming["one_time_max_frequency"]:
        words.append("one-time buyers")
    elif ratio("frequency") >= naming["loyal_min_ratio"]:
        words.append("loyal buyers")
    else:
        words.append("repeat buyers")
    text = " ".join(words)
    return text[0].upper() + text[1:]


def cluster_customers(frame: pd.DataFrame, config: dict | None = None, clv_col: str | None = None) -> ClusterResult:
    """Behavioural clusters with k chosen by silhouette, a per-cluster summary and names.

    Summary columns: ``cluster``, ``name``, ``customers``, ``customer_share``, ``revenue``,
    ``revenue_share``, ``mean_revenue``, ``mean_recency_days``, ``mean_frequency``,
    ``mean_aov`` and ``mean_clv`` when ``clv_col`` is given.
    """
    cfg = _config(config)["clusters"]
    scaler = StandardScaler().fit(log_matrix(frame, cfg["features"]))
    x = scaler.transform(log_matrix(frame, cfg["features"]))
    k, scores, all_labels = choose_k(
        x,
        range(int(cfg["k_min"]), int(cfg["k_max"]) + 1),
        seed=int(cfg.get("seed", 0)),
        n_init=int(cfg.get("n_init", 10)),
        sample_size=int(cfg.get("silhouette_sample_size", 5000)),
        fit_sample_size=int(cfg.get("fit_sample_size", 0)),
    )
    raw_labels = all_labels[k]

    columns = {
        "revenue": cfg["revenue_column"],
        "recency": cfg["recency_column"],
        "frequency": cfg["frequency_column"],
        "aov": cfg["aov_column"],
    }
    values = pd.DataFrame(
        {key: pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float) for key, col in columns.items()}
    )
    if clv_col is not None:
        values["clv"] = pd.to_numeric(frame[clv_col], errors="coerce").to_numpy(dtype=float)
    values["raw"] = raw_labels
    means = values.groupby("raw").mean()
    order = means.sort_values("revenue", ascending=False, kind="stable").index
    relabel = {raw: new for new, raw in enumerate(order)}
    labels = pd.Series(pd.Series(raw_labels).map(relabel).to_numpy(), index=frame.index, name="cluster")
    # a centroid no customer is nearest to keeps an id after the others (it can win customers later)
    fitted = all_labels["model"].cluster_centers_
    ids = {**relabel, **{raw: len(relabel) + i for i, raw in
                         enumerate(r for r in range(len(fitted)) if r not in relabel)}}
    centroids = np.empty_like(fitted)
    for raw, new in ids.items():
        centroids[int(new)] = fitted[int(raw)]

    values["cluster"] = labels.to_numpy()
    grouped = values.groupby("cluster")
    summary = pd.DataFrame(
        {
            "customers": grouped.size(),
            "revenue": grouped["revenue"].sum(),
            "mean_revenue": grouped["revenue"].mean(),
            "mean_recency_days": grouped["recency"].mean(),
            "mean_frequency": grouped["frequency"].mean(),
            "mean_aov": grouped["aov"].mean(),
        }
    )
    summary.insert(1, "customer_share", summary["customers"] / summary["customers"].sum())
    total_revenue = summary["revenue"].sum()
    summary.insert(3, "revenue_share", summary["revenue"] / total_revenue if total_revenue else np.nan)
    if clv_col is not None:
        summary["mean_clv"] = grouped["clv"].mean()

    population = {key: float(values[key].mean()) for key in ("revenue", "recency", "frequency", "aov")}
    naming = cfg["naming"]
    names, seen = [], {}
    for _, row in summary.iterrows():
        name = name_cluster(
            {
                "revenue": row["mean_revenue"],
                "recency": row["mean_recency_days"],
                "frequency": row["mean_frequency"],
                "aov": row["mean_aov"],
            },
            population,
            naming,
        )
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    summary.insert(0, "name", names)
    summary = summary.reset_index()
    name_by_cluster = dict(zip(summary["cluster"], summary["name"]))
    return ClusterResult(
        labels=labels,
        names=labels.map(name_by_cluster).rename("cluster_name"),
        k=k,
        silhouette=scores,
        summary=summary,
        centroids=centroids,
        scaler=scaler,
    )


def fit_clusters(frame: pd.DataFrame, config: dict | None = None, clv_col: str | None = None) -> dict:
    """The clustering of ``cluster_customers`` as stored parameters: the scaler (mean, scale of the
    log1p features), the centroids in cluster-id order (0 = highest mean revenue), the names, k and
    the silhouette per k. ``assign_clusters`` with them labels any customer without refitting.
    """
    cfg = _config(config)["clusters"]
    result = cluster_customers(frame, config, clv_col)
    names = dict(zip(result.summary["cluster"].astype(int), result.summary["name"]))
    return {
        "features": list(cfg["features"]),
        "mean": [float(v) for v in result.scaler.mean_],
        "scale": [float(v) for v in result.scaler.scale_],
        "centroids": result.centroids.tolist(),
        "names": [names.get(i, f"Cluster {i}") for i in range(len(result.centroids))],
        "k": int(result.k),
        "silhouette": {str(k): float(v) for k, v in result.silhouette.items()},
    }


def assign_clusters(frame: pd.DataFrame, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(cluster id, cluster name) per row: the nearest stored centroid in the stored scaling."""
    x = (log_matrix(frame, params["features"]) - np.asarray(params["mean"])) / np.asarray(params["scale"])
    centroids = np.asarray(params["centroids"], dtype=float)
    distances = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    labels = distances.argmin(axis=1)
    return labels, np.asarray(params["names"], dtype=object)[labels]


def rfm_from_scores(scores: pd.DataFrame, config: dict | None = None) -> pd.DataFrame:
    """``rfm_scores`` output from r/f/m scores computed elsewhere (the store-wide ranks in SQL)."""
    config = _config(config)
    out = scores[["r_score", "f_score", "m_score"]].astype(int)
    out["fm_score"] = np.floor((out["f_score"] + out["m_score"]) / 2 + 0.5).astype(int)
    out["rfm_cell"] = _cells(*(out[c].to_numpy() for c in ("r_score", "f_score", "m_score")))
    out["rfm_segment"] = assign_segments(out, config)
    return out


def _cells(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """"rfm" cell labels ("513") of integer scores >= 0 through a table of the scores' texts: three
    pandas ``astype(str)`` per batch were 0.4 s of the 300k nightly's segment step."""
    top = int(max(r.max(), f.max(), m.max())) if len(r) else 0
    text = np.array([str(i) for i in range(top + 1)], dtype=object)
    return text[r] + text[f] + text[m]


def segment_customers(
    frame: pd.DataFrame,
    config: dict | None = None,
    p_alive_col: str | None = None,
    clv_col: str | None = None,
) -> tuple[pd.DataFrame, ClusterResult]:
    """All three segmentations of a features frame, one row per customer, plus the clustering."""
    config = _config(config)
    out = rfm_segments(frame, config)
    if "customer_id" in frame:
        out.insert(0, "customer_id", frame["customer_id"].to_numpy())
    p_alive = frame[p_alive_col] if p_alive_col else None
    out["lifecycle_stage"] = lifecycle_stages(frame, config, p_alive)
    clusters = cluster_customers(frame, config, clv_col)
    out["cluster"] = clusters.labels
    out["cluster_name"] = clusters.names
    return out, clusters


def with_rules(config: dict, rules: list[dict]) -> dict:
    """A copy of ``config`` whose RFM segment rules are replaced by ``rules``."""
    updated = copy.deepcopy(config)
    updated["rfm"]["segments"] = _validated_rules(list(rules))
    return updated
