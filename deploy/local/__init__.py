"""Zero-install local mode: embedded Redis/PostgreSQL and the `make run` process supervisor."""
