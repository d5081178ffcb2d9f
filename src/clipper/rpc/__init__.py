"""The wire between query frontends and model containers: Clipper's RPC v3 over ZeroMQ."""
