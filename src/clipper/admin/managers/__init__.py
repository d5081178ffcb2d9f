"""Container managers: start, stop, scale and report a cluster's processes or containers."""
