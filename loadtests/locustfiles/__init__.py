"""Locust scenarios against a running engine, one locustfile per scenario (`make load SCENARIO=<name>`).

Shared helpers live beside them: `knobs` (environment settings), `orders` (request bodies, submission and
cancellation, BEST prices), `streams` (a gevent-friendly WebSocket follower), `reporting` (custom locust request
types) and `launches` (finding the next simulated token launch through the API).

The package is not called `locust`: locust puts a locustfile's folder on sys.path, and a folder of that
name would shadow the library.
"""
