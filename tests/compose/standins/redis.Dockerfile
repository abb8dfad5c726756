# Stand-in for redis:7: Debian's redis-server 7.0 behind an entrypoint that, like the upstream one, turns
# protected mode off (without it, other containers are refused) and runs in /data.
ARG BASE=order-engine-standin/debian:bookworm
FROM ${BASE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server && rm -rf /var/lib/apt/lists/*
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /data
WORKDIR /data
VOLUME /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
