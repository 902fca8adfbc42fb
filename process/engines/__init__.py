"""Engines: series derived from stored data (order flow, liquidation heatmap, positioning)."""
