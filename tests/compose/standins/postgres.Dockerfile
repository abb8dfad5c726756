# Stand-in for postgres:16: Debian's PostgreSQL 15 behind an entrypoint that does what the upstream one does
# for this project (initdb with POSTGRES_USER/PASSWORD/DB on an empty data dir, listen on every interface,
# password auth from other hosts, run as the postgres user); `pg_isready` on PATH.
ARG BASE=order-engine-standin/debian:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/run/postgresql /var/lib/postgresql/data \
    && chown -R postgres:postgres /var/run/postgresql /var/lib/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
