"""What the services say about themselves: Prometheus metrics and a /health probe.

`probes` serves both for the services other than the API (which serves them on its own port); `orders`
holds the counters and histograms the hot paths touch (in-process, no I/O); `redis_gauges`, `quote_ages`
and `dbsync` are collectors that compute their gauges only when Prometheus scrapes.
"""
