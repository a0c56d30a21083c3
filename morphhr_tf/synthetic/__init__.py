"""Synthetic data sets the project generates for tests, demos and benchmarks."""
