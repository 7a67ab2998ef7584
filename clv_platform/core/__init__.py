"""The lowest layer: helpers every other layer shares (SQL runner and transactions, thresholds,
the model horizon the data contract states). Imports nothing of clv_platform but `settings`."""
