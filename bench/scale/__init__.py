"""The ImageNet-scale simulation: ``python -m bench.scale`` (see ``__main__``)."""
