"""Store-level revenue forecast (existing + new customers) and its backtest."""
