"""Datasets: importers of labelled sets, the deterministic split, DVC helpers."""
