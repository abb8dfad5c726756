"""Zero-install local mode: embedded Redis/PostgreSQL and the `make run` process supervisor."""

#: Every engine process: its name (in the log prefix, in `--only`, and as in compose.yaml) -> its module.
SERVICES: dict[str, str] = {
    "api": "services.api",
    "quote-stream": "services.quote_stream",
    "execution-worker": "services.execution_worker",
    "db-sync": "services.db_sync",
    "limit-worker": "services.limit_worker",
    "sniper-worker": "services.sniper_worker",
    # add new processes here and in compose.yaml
}
