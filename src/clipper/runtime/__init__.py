"""What runs inside a model container: the RPC loop (`server`), closures (`closure`), input decoding.

Nothing is imported here, so `clipper.runtime.closure` stays usable by the admin client without ZeroMQ.
"""
