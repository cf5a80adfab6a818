"""Datasets: the manifest every pipeline reads, the embedded default data, ImageNet preparation."""
