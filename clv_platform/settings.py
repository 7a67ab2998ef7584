"""The platform's settings: one typed object, read once, handed to the graph as a resource.

Two places feed it:

* the environment, for what differs per machine or deployment: which store this database holds
  (`CLV_SOURCE=demo|shopify|files`, default `demo`), paths (`CLV_DATA_DIR`, `CLV_DUCKDB_PATH`,
  `CLV_INBOX_DIR`, `CLV_EXPORT_DIR`, `CLV_ANALYTICS_PATH`), `CLV_AS_OF`, the DuckDB memory cap,
  and whether the live credentials are present (their values are never read here: the clients
  bind them with `dg.EnvVar`);
* `store.toml` (the packaged defaults, overridden by `<data dir>/store.toml` when it exists), for
  the store owner's knobs: the store's time zone, the currency of imported files, the first day
  of Shopify history, the demo store's size and seed.

This module is the only one that reads `os.environ` for them. `definitions.py` calls
`load_settings()` once and builds the `StorageResource` (a `DuckDBResource` that also carries
the settings) every asset, check and sensor receives; `settings_of(resource)` gives the assets
the typed object back.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SOURCES = ("demo", "shopify", "files")
DEFAULT_MEMORY_LIMIT = "4GB"
# The demo store is generated over this many days, ending the day before the run.
DEMO_HISTORY_DAYS = 730


class SettingsError(ValueError):
    """A setting has a value the platform cannot run with; the message names the setting."""


DEFAULT_REPORTS_URL = "http://127.0.0.1:3001"
DEFAULT_REPORT_RETENTION = 5
DEFAULT_BATCH_CUSTOMERS = 500_000
DEFAULT_REFIT_AFTER_DAYS = 8
EXPORT_FORMATS = ("parquet", "csv")
"""The file formats of the dated customer-scores export (store.toml [exports] formats)."""

# The newest stable Shopify Admin API version (quarterly, each supported for 12 months).
DEFAULT_SHOPIFY_API_VERSION = "2026-10"


@dataclass(frozen=True)
class Settings:
    """Everything the graph needs to know about where it runs and which store it serves."""

    source: str
    data_dir: Path
    duckdb_path: Path
    inbox_dir: Path
    export_dir: Path
    analytics_path: Path
    models_dir: Path
    memory_limit: str
    as_of: date | None
    store_timezone: str
    file_currency: str | None
    orders_start_date: str
    demo_customers: int
    demo_seed: int
    shopify_api_version: str
    has_shopify_credentials: bool
    # which kind of Shopify credential is configured (names only, never values): a Dev Dashboard
    # app's client credentials grant, or a legacy static Admin API token
    shopify_uses_client_credentials: bool
    has_klaviyo_key: bool
    # HTML reports (explainability, drift, backtest), where `make ui` serves them read-only, and
    # how many of each kind are kept (each drift report is about 5 MB)
    reports_dir: Path = Path("data/reports")
    reports_url: str = DEFAULT_REPORTS_URL
    report_retention: int = DEFAULT_REPORT_RETENTION
    # store.toml [scale]: customers per batch of the scoring, segmentation and drift steps (peak
    # memory follows it, not the store size), and how many cutoff days a stored fit (BTYD,
    # revenue forecast, segmentation) is reused by the nightly run before it is refitted
    batch_customers: int = DEFAULT_BATCH_CUSTOMERS
    refit_after_days: int = DEFAULT_REFIT_AFTER_DAYS
    # store.toml [files.columns]: (raw column, header as the export writes it) pairs, for exports
    # whose headers the importer does not know (`file_import.detect_format`); sorted, so hashable
    file_columns: tuple[tuple[str, str], ...] = ()
    # store.toml [files] sheets: the only sheets of a workbook that are read (empty: every sheet)
    file_sheets: tuple[str, ...] = ()
    # store.toml [files] date_order: how a file's slash dates read when its own dates cannot tell
    # (every field up to 12): "auto" (the store's other files, else month-first), "day-first", "month-first"
    file_date_order: str = "auto"
    # store.toml [exports]: which files each scoring date writes, and how many scoring dates of
    # them stay in the folder (0: every date; a pair is about 360 MB at 1,000,000 customers)
    export_formats: tuple[str, ...] = EXPORT_FORMATS
    export_keep_dates: int = 0

    def demo_end_date(self, today: date | None = None) -> date:
        """The demo store's last day of history: the day before the run (or before `CLV_AS_OF`)."""
        anchor = self.as_of or today or datetime.now(timezone.utc).date()
        return anchor - timedelta(days=1)

    def last_complete_day(self, now: datetime | None = None, tz_name: str | None = None) -> date:
        """Yesterday in the store's time zone: the newest day whose orders are all in."""
        now = now or datetime.now(timezone.utc)
        return now.astimezone(ZoneInfo(tz_name or self.store_timezone)).date() - timedelta(days=1)


FILE_COLUMN_FIELDS = ("customer_id", "order_id", "order_date", "amount", "product_id", "description", "quantity",
                      "unit_price", "country", "currency", "status", "refunded_amount")
"""The raw columns of an export that store.toml [files.columns] may name a header for."""


def _file_columns(table: object) -> tuple[tuple[str, str], ...]:
    """store.toml [files.columns] checked: known raw columns, non-empty header names, no header twice."""
    if not isinstance(table, dict):
        raise SettingsError("store.toml [files.columns] must be a table of raw column = \"header in the file\"")
    unknown = sorted(set(table) - set(FILE_COLUMN_FIELDS))
    if unknown:
        raise SettingsError(f"store.toml [files.columns]: unknown column(s) {unknown}; the columns are "
                            f"{', '.join(FILE_COLUMN_FIELDS)}")
    bad = sorted(k for k, v in table.items() if not isinstance(v, str) or not v.strip())
    if bad:
        raise SettingsError(f"store.toml [files.columns]: {bad} must name a header of the file (a non-empty string)")
    headers = [" ".join(v.split()).lower() for v in table.values()]
    if len(set(headers)) < len(headers):
        raise SettingsError("store.toml [files.columns]: one header is named for two columns")
    return tuple(sorted((k, v.strip()) for k, v in table.items()))


FILE_DATE_ORDERS = ("auto", "day-first", "month-first")


def _file_date_order(value: object) -> str:
    """store.toml [files] date_order (env CLV_FILE_DATE_ORDER) checked."""
    order = str(value).strip().lower()
    if order not in FILE_DATE_ORDERS:
        raise SettingsError(f"store.toml [files] date_order = {value!r} is not one of {', '.join(FILE_DATE_ORDERS)}")
    return order


def _file_sheets(value: object) -> tuple[str, ...]:
    """store.toml [files] sheets checked: a list of sheet names (none empty, none twice)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SettingsError("store.toml [files] sheets must be a list of sheet names, e.g. [\"Transactions\"] "
                            "(empty: every sheet of a workbook is read)")
    names = [v.strip() for v in value]
    if len({n.casefold() for n in names}) < len(names):
        raise SettingsError(f"store.toml [files] sheets names a sheet twice: {names}")
    return tuple(names)


def _packaged_toml() -> dict:
    return tomllib.loads(resources.files("clv_platform").joinpath("store.toml").read_text(encoding="utf-8"))


def _merged_toml(data_dir: Path, env: Mapping[str, str]) -> dict:
    config = _packaged_toml()
    override = Path(env["CLV_STORE_CONFIG"]) if env.get("CLV_STORE_CONFIG") else data_dir / "store.toml"
    if override.is_file():
        try:
            user = tomllib.loads(override.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{override}: not valid TOML ({exc})") from exc
        for section, values in user.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
            else:
                config[section] = values
    return config


def store_mismatch_message(database: str, held: str, wanted: str) -> str:
    """Why a run refuses a database that holds another store (`meta.platform`) than `CLV_SOURCE`."""
    return (
        f"{database} holds the '{held}' store, but CLV_SOURCE={wanted}. Nothing was read or written "
        f"(no raw row is ever deleted to switch stores). Run with CLV_SOURCE={held} to use this database, "
        f"or point CLV_DUCKDB_PATH at another file (by default each source has its own: "
        f"demo.duckdb, clv.duckdb for shopify, files.duckdb)."
    )


def default_database(data_dir: Path, source: str) -> Path:
    """Each kind of store gets its own file, so a demo run can never touch a live or files database.

    The live store keeps the historical name `clv.duckdb`, so an existing live install finds its data.
    """
    return data_dir / {"demo": "demo.duckdb", "shopify": "clv.duckdb", "files": "files.duckdb"}[source]


# Environment variables whose values are secrets wherever they appear. Their values are never part
# of `Settings` (which Dagster shows as resource config); `secret_values()` hands them to redaction.
SECRET_ENV_VARS = ("SHOPIFY_ACCESS_TOKEN", "SHOPIFY_CLIENT_SECRET", "KLAVIYO_API_KEY")

# What a command forces for the rest of its process (`clv-platform demo` runs the demo store
# whatever `CLV_SOURCE` says); None hides a variable from the settings. See `force_environment`.
_FORCED: dict[str, str | None] = {}


def force_environment(**values: str | None) -> None:
    """Override environment settings for the rest of this process, without touching `os.environ`.

    `force_environment(CLV_SOURCE="demo", KLAVIYO_API_KEY=None)`: every later `load_settings()` sees
    the demo source and no Klaviyo key. Used by the command line, which runs one store per process.
    """
    _FORCED.update(values)


def clear_forced_environment() -> None:
    """Forget what `force_environment` set (tests)."""
    _FORCED.clear()


def environment() -> dict[str, str]:
    """The process environment as the settings see it: `os.environ` plus what was forced."""
    env = dict(os.environ)
    for name, value in _FORCED.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def env_value(name: str) -> str | None:
    """One environment value as the settings see it (e.g. `DAGSTER_HOME` for the command line)."""
    return environment().get(name)


def secret_values() -> tuple[str, ...]:
    """The values of the credential variables set in the process, for redaction only.

    Read from `os.environ` itself, not the forced view: a key hidden from a demo run's settings is
    still a secret that must not reach a log.
    """
    return tuple(v for v in (os.environ.get(name) for name in SECRET_ENV_VARS) if v)


_ACTIVE: ContextVar[Settings | None] = ContextVar("clv_active_settings", default=None)


@contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    """Within the block, `load_settings()` returns `settings` instead of reading the environment.

    For a tool that runs the graph in process on its own files (the benchmark): every module that
    still asks `load_settings()` for a path gets the tool's, and the environment is never rewritten.
    """
    token = _ACTIVE.set(settings)
    try:
        yield settings
    finally:
        _ACTIVE.reset(token)


def _exports(table: object) -> tuple[tuple[str, ...], int]:
    """store.toml [exports] checked: (formats, scoring dates to keep)."""
    if not isinstance(table, dict):
        raise SettingsError("store.toml [exports] must be a table (formats = [...], keep_dates = N)")
    unknown = sorted(set(table) - {"formats", "keep_dates"})
    if unknown:
        raise SettingsError(f"store.toml [exports] has unknown keys {unknown}; expected formats, keep_dates")
    formats = table.get("formats", list(EXPORT_FORMATS))
    if (not isinstance(formats, list) or not formats or len(set(formats)) != len(formats)
            or not set(formats) <= set(EXPORT_FORMATS)):
        raise SettingsError(f"store.toml [exports] formats must be a non-empty list of distinct {list(EXPORT_FORMATS)}, "
                            f"got {formats!r}")
    keep = table.get("keep_dates", 0)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise SettingsError(f"store.toml [exports] keep_dates must be a whole number, 0 (keep every date) or more, "
                            f"got {keep!r}")
    return tuple(f for f in EXPORT_FORMATS if f in formats), keep


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment and `store.toml` into a `Settings`; raise `SettingsError` on a bad value.

    Inside `using_settings(s)` (and without an explicit `env`) this is `s`.
    """
    if env is None and (active := _ACTIVE.get()) is not None:
        return active
    env = environment() if env is None else env
    source = (env.get("CLV_SOURCE") or "demo").strip().lower()
    if source not in SOURCES:
        raise SettingsError(f"CLV_SOURCE={source!r} is not one of {', '.join(SOURCES)}")
    data_dir = Path(env.get("CLV_DATA_DIR") or "data").resolve()
    config = _merged_toml(data_dir, env)
    store, demo, scale = config.get("store", {}), config.get("demo", {}), config.get("scale", {})
    file_columns = _file_columns(config.get("files", {}).get("columns", {}))
    file_sheets = _file_sheets(config.get("files", {}).get("sheets", []))
    file_date_order = _file_date_order(env.get("CLV_FILE_DATE_ORDER") or config.get("files", {}).get("date_order")
                                       or "auto")
    export_formats, export_keep_dates = _exports(config.get("exports", {}))

    as_of_text = (env.get("CLV_AS_OF") or "").strip()
    try:
        as_of = date.fromisoformat(as_of_text) if as_of_text else None
    except ValueError as exc:
        raise SettingsError(f"CLV_AS_OF={as_of_text!r} is not a YYYY-MM-DD date") from exc

    tz_name = str(env.get("CLV_STORE_TIMEZONE") or store.get("timezone") or "UTC")
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(f"store time zone {tz_name!r} (store.toml [store] timezone) is not an IANA name") from exc
    currency = str(env.get("CLV_FILE_CURRENCY") or store.get("file_currency") or "").strip().upper() or None
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise SettingsError(f"file currency {currency!r} (store.toml [store] file_currency) is not a 3-letter ISO code")

    try:
        retention = int(env.get("CLV_REPORT_RETENTION") or DEFAULT_REPORT_RETENTION)
    except ValueError as exc:
        raise SettingsError(f"CLV_REPORT_RETENTION={env.get('CLV_REPORT_RETENTION')!r} is not a whole number") from exc
    if retention < 1:
        raise SettingsError(f"CLV_REPORT_RETENTION must be at least 1 (the report just written), got {retention}")

    try:
        batch_customers = int(scale.get("batch_customers", DEFAULT_BATCH_CUSTOMERS))
        refit_after_days = int(scale.get("refit_after_days", DEFAULT_REFIT_AFTER_DAYS))
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"store.toml [scale] batch_customers / refit_after_days must be whole numbers: {exc}") from exc
    if batch_customers < 1 or refit_after_days < 0:
        raise SettingsError("store.toml [scale] batch_customers must be at least 1 and refit_after_days at least 0, "
                            f"got {batch_customers} and {refit_after_days}")

    return Settings(
        source=source,
        data_dir=data_dir,
        duckdb_path=Path(env.get("CLV_DUCKDB_PATH") or default_database(data_dir, source)).resolve(),
        inbox_dir=Path(env.get("CLV_INBOX_DIR") or data_dir / "inbox").resolve(),
        export_dir=Path(env.get("CLV_EXPORT_DIR") or data_dir / "exports").resolve(),
        analytics_path=Path(env.get("CLV_ANALYTICS_PATH") or data_dir / "analytics.duckdb").resolve(),
        # Models of a live store are never replaced by a demo or files run's models.
        models_dir=Path(env.get("CLV_MODELS_DIR") or (data_dir / "models" if source == "shopify"
                                                      else data_dir / "models" / source)).resolve(),
        memory_limit=env.get("CLV_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
        as_of=as_of,
        store_timezone=tz_name,
        file_currency=currency,
        orders_start_date=str(env.get("CLV_ORDERS_START_DATE") or store.get("orders_start_date") or "2024-11-01"),
        demo_customers=int(env.get("CLV_DEMO_CUSTOMERS") or demo.get("customers", 5000)),
        demo_seed=int(env.get("CLV_DEMO_SEED") or demo.get("seed", 42)),
        shopify_api_version=str(env.get("SHOPIFY_API_VERSION") or store.get("shopify_api_version")
                                or DEFAULT_SHOPIFY_API_VERSION),
        has_shopify_credentials=bool(env.get("SHOPIFY_SHOP_DOMAIN"))
        and bool((env.get("SHOPIFY_CLIENT_ID") and env.get("SHOPIFY_CLIENT_SECRET")) or env.get("SHOPIFY_ACCESS_TOKEN")),
        shopify_uses_client_credentials=bool(env.get("SHOPIFY_CLIENT_ID")),
        has_klaviyo_key=bool(env.get("KLAVIYO_API_KEY")),
        reports_dir=Path(env.get("CLV_REPORTS_DIR") or data_dir / "reports").resolve(),
        reports_url=(env.get("CLV_REPORTS_URL") or DEFAULT_REPORTS_URL).rstrip("/"),
        report_retention=retention,
        batch_customers=batch_customers,
        refit_after_days=refit_after_days,
        file_columns=file_columns,
        file_sheets=file_sheets,
        file_date_order=file_date_order,
        export_formats=export_formats,
        export_keep_dates=export_keep_dates,
    )


def settings_fields(settings: Settings) -> dict[str, object]:
    """The settings as plain config values (paths and dates as text) for a Dagster resource."""
    values = asdict(settings)
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, Path):
            out[key] = str(value)
        elif isinstance(value, date):
            out[key] = value.isoformat()
        elif key == "file_columns":
            out[key] = dict(value)
        elif key in ("export_formats", "file_sheets"):
            out[key] = list(value)
        else:
            out[key] = value
    return out


def settings_from_fields(fields: Mapping[str, object]) -> Settings:
    """Inverse of `settings_fields`."""
    kwargs = dict(fields)
    for key in ("data_dir", "duckdb_path", "inbox_dir", "export_dir", "analytics_path", "models_dir", "reports_dir"):
        kwargs[key] = Path(str(kwargs[key]))
    kwargs["as_of"] = date.fromisoformat(str(kwargs["as_of"])) if kwargs.get("as_of") else None
    kwargs["file_currency"] = kwargs.get("file_currency") or None
    kwargs["file_columns"] = tuple(sorted(dict(kwargs.get("file_columns") or {}).items()))
    kwargs["export_formats"] = tuple(kwargs.get("export_formats") or EXPORT_FORMATS)
    kwargs["file_sheets"] = tuple(kwargs.get("file_sheets") or ())
    return Settings(**kwargs)


def with_database(settings: Settings, database: str | Path) -> Settings:
    return replace(settings, duckdb_path=Path(database).resolve())
