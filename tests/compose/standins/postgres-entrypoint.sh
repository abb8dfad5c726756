#!/bin/sh
set -e
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ "$1" = "postgres" ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        user="${POSTGRES_USER:-postgres}"
        printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > /tmp/pwfile
        chown postgres /tmp/pwfile
        # Without -E UTF8 the cluster is SQL_ASCII and SQLAlchemy reads version() as bytes.
        as_postgres initdb -E UTF8 --locale=C.UTF-8 -U "$user" --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
        rm -f /tmp/pwfile
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        echo "listen_addresses = '*'" >> "$PGDATA/postgresql.auto.conf"
        db="${POSTGRES_DB:-$user}"
        if [ "$db" != "postgres" ]; then
            as_postgres postgres --single -D "$PGDATA" postgres <<SQL
CREATE DATABASE "$db";
SQL
        fi
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
