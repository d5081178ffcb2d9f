"""The cluster's state: a Redis server in Clipper's layout, typed reads and writes, change events."""
