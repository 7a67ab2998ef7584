"""The tree's structure rules (tools/check_imports.py): imports run downward only, and only the
settings read the environment."""

import functools
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clv_platform.core.horizon import load_horizon
from clv_platform.models import clv

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "clv_platform"


@functools.cache
def _lint():
    """tools/check_imports.py loaded once (its parse cache then serves every test here)."""
    spec = importlib.util.spec_from_file_location("check_imports", ROOT / "tools" / "check_imports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree_copy(tmp_path):
    """The package's Python files copied to tmp_path, to plant violations in."""
    target = tmp_path / "clv_platform"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.toml", "*.sql", "*.md"))
    return target


def test_the_tree_imports_downward_only():
    assert _lint().violations(PACKAGE) == []


def test_make_lint_runs_the_check_and_passes():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_imports.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "import direction and environment reads ok" in done.stdout


@pytest.mark.parametrize(
    "module, line, named",
    [
        # a top-level upward import: ingestion reaching into the marts
        ("ingestion/raw_tables.py", "from clv_platform.marts import assets\n", "clv_platform.marts.assets (marts)"),
        # a lazy one inside a function counts too
        ("models/btyd.py", "def _late():\n    from clv_platform.checks.model_checks import MODEL_CHECKS\n",
         "clv_platform.checks.model_checks (checks)"),
        # the low layer importing a resource
        ("core/sql.py", "import clv_platform.resources.storage\n", "clv_platform.resources.storage (resources)"),
        # relative imports are resolved like absolute ones
        ("transforms/features.py", "from ..monitoring import drift\n", "clv_platform.monitoring.drift (monitoring)"),
    ],
)
def test_a_planted_upward_import_fails(tree_copy, module, line, named, capsys):
    path = tree_copy / module
    path.write_text(path.read_text() + "\n" + line)
    lint = _lint()
    problems = lint.violations(tree_copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:") and named in problems[0] and "a higher layer" in problems[0]
    assert lint.main(["check_imports.py", str(tree_copy)]) == 1
    assert named in capsys.readouterr().out


def test_a_module_in_no_layer_fails(tree_copy):
    (tree_copy / "scratch.py").write_text('"""A module nobody placed."""\n')
    problems = _lint().violations(tree_copy)
    assert problems == [f"{tree_copy / 'scratch.py'}: module clv_platform.scratch is in no layer of tools/check_imports.py LAYERS"]


def test_downward_and_same_layer_imports_pass(tree_copy):
    path = tree_copy / "marts" / "exports.py"
    path.write_text(path.read_text() + "\nfrom clv_platform.models import segments\nfrom clv_platform.marts import publish\n")
    assert _lint().violations(tree_copy) == []


@pytest.mark.parametrize(
    "code, what",
    [
        ("import os\nSOURCE = os.environ.get('CLV_SOURCE')\n", "os.environ"),
        ("import os\n\ndef f():\n    return os.getenv('CLV_AS_OF')\n", "os.getenv"),
        ("from os import environ\n", "from os import environ"),
        ("import os\n\ndef f():\n    os.environ['CLV_SOURCE'] = 'demo'\n", "os.environ"),
    ],
)
def test_reading_the_environment_outside_settings_fails(tree_copy, code, what):
    path = tree_copy / "marts" / "exports.py"
    path.write_text(path.read_text() + "\n" + code)
    problems = _lint().violations(tree_copy)
    assert len(problems) == 1, problems
    assert f"clv_platform.marts.exports reads the environment ({what})" in problems[0]


def test_settings_and_definitions_may_read_the_environment(tree_copy):
    path = tree_copy / "definitions.py"
    path.write_text(path.read_text() + "\nimport os\nHOME = os.environ.get('DAGSTER_HOME')\n")
    assert _lint().violations(tree_copy) == []


def test_the_contracts_horizon_is_the_models_horizon():
    """core.horizon reads clv.toml's [horizon] for the data contract; it must agree with the models."""
    config, horizon = clv.load_config(), load_horizon()
    assert (horizon.horizon_days, horizon.label_horizon_days, horizon.annual_discount_rate) == (
        config.horizon_days, config.label_horizon_days, config.annual_discount_rate)


def test_transaction_commits_a_block_and_rolls_back_a_failed_one(tmp_path):
    import duckdb

    from clv_platform.core.sql import transaction

    with duckdb.connect(str(tmp_path / "t.duckdb")) as conn:
        conn.execute("create table t (x integer)")
        with transaction(conn):
            conn.execute("insert into t values (1), (2)")
        with pytest.raises(ZeroDivisionError):
            with transaction(conn):
                conn.execute("insert into t values (3)")
                1 / 0
        assert conn.execute("select list(x order by x) from t").fetchone()[0] == [1, 2]
        # the connection is usable again: no transaction was left open
        with transaction(conn):
            conn.execute("delete from t where x = 1")
        assert conn.execute("select list(x) from t").fetchone()[0] == [2]


def test_a_forced_source_reaches_the_settings_without_touching_os_environ(monkeypatch, tmp_path):
    import os

    from clv_platform.settings import env_value, force_environment, load_settings, secret_values

    monkeypatch.setenv("CLV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLV_SOURCE", "shopify")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_forced_test_key_123")
    monkeypatch.delenv("CLV_DUCKDB_PATH", raising=False)
    force_environment(CLV_SOURCE="demo", KLAVIYO_API_KEY=None)
    settings = load_settings()
    assert (settings.source, settings.has_klaviyo_key) == ("demo", False)
    assert settings.duckdb_path == (tmp_path / "demo.duckdb").resolve()
    assert env_value("CLV_SOURCE") == "demo" and env_value("KLAVIYO_API_KEY") is None
    assert os.environ["CLV_SOURCE"] == "shopify"
    # a key hidden from the settings is still redacted
    assert "pk_forced_test_key_123" in secret_values()


def test_every_asset_key_is_declared_once_as_a_literal_schema_table():
    """A newcomer finds an asset's code by grepping its key: `["schema", "table"]` stands in exactly
    one module of the package (where the asset is defined), and the key has the layer prefix."""
    import re

    from clv_platform.definitions import ASSETS, TABLE_SPECS

    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    layers = {"raw", "staging", "features", "ml", "scores", "monitoring", "marts", "activation"}
    keys = [key for asset in ASSETS for key in asset.keys] + [spec.key for spec in TABLE_SPECS]
    assert len(keys) == len(set(keys)) and len(keys) >= 38
    for key in keys:
        assert len(key.path) == 2 and key.path[0] in layers, key
        literal = re.compile(r'\[\s*"%s",\s*"%s"\s*\]' % tuple(key.path))
        places = [p.relative_to(PACKAGE).as_posix() for p, text in sources.items() if len(literal.findall(text))]
        counts = [len(literal.findall(sources[PACKAGE / p])) for p in places]
        assert places and counts == [1], f"{key.to_user_string()} declared in {places} ({counts})"


def test_sql_assets_carry_the_hash_of_their_sql_as_code_version():
    """So the UI marks an asset stale when its SQL changed since it was last materialized."""
    import dagster as dg

    from clv_platform.core.sql import sql_code_version
    from clv_platform.definitions import ASSETS
    from clv_platform.transforms.staging import STAGING_SCRIPTS

    versions = {k: a.code_versions_by_key.get(k) for a in ASSETS for k in a.keys}
    sql_assets = {k for a in ASSETS for k in a.keys if "sql" in a.specs_by_key[k].kinds}
    assert len(sql_assets) >= 20
    assert [k.to_user_string() for k in sql_assets if not versions[k]] == []
    # an incremental order mart's version covers its state SQL too, so editing either marks it stale
    assert versions[dg.AssetKey(["marts", "revenue_monthly"])] == sql_code_version(
        "clv_platform.marts", "sql/_customer_months.sql", "sql/revenue_monthly.sql")
    assert versions[dg.AssetKey(["features", "customer_features"])] == sql_code_version(
        "clv_platform.transforms", "sql/customer_features.sql")
    assert versions[dg.AssetKey(["staging", "orders"])] == sql_code_version(
        "clv_platform.transforms", *(f"sql/staging/{s}" for s in STAGING_SCRIPTS))
    # every mart has its own SQL, so its own version
    marts = [versions[k] for k in sql_assets if k.path[0] == "marts"]
    assert len(set(marts)) == len(marts)


def test_editing_the_sql_changes_the_code_version(monkeypatch):
    from clv_platform.core import sql

    before = sql.sql_code_version("clv_platform.marts", "sql/revenue_monthly.sql")
    text = sql.read_sql("clv_platform.marts", "sql/revenue_monthly.sql")
    monkeypatch.setattr(sql, "read_sql", lambda package, name: text + "\n-- a comment\n")
    assert sql.sql_code_version("clv_platform.marts", "sql/revenue_monthly.sql") != before
