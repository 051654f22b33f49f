"""Datasets: cards, verified fetching, conversion to the canonical format, loading."""
