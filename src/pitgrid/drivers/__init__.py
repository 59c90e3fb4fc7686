"""Drivers of the trading cycle: the batch engine and the per-bar step driver, on one compiled step."""
