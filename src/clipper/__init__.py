"""clipper: low-latency online prediction serving, compatible with Clipper 0.4."""

__version__ = "0.5.0"
