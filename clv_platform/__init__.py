"""clv_platform: customer-lifetime-value platform on Dagster + DuckDB."""

import warnings

# raw/shopify_orders uses BackfillPolicy.single_run() on purpose (a backfill of N days is one
# fetch, not N runs); Dagster flags the parameter as beta at import, which is noise at every
# `dagster dev` start. Only that one warning is silenced.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `asset` is currently in beta")
