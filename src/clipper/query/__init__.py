"""The query core: plain asyncio code from typed queries to answers. No HTTP, no ZeroMQ, no Redis here."""
