"""`order-engine`: the operator's command line. One module per command group (dlq, keys, …); the groups talk
to Redis directly with the same settings as the services (REDIS_URL, …)."""
