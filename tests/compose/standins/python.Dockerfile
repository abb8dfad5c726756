# Stand-in for python:3.11-slim-bookworm: Debian's python3 3.11 with a venv at /usr/local, so `python`, `pip`
# and what pip installs land in /usr/local/bin as in the upstream image.
ARG BASE=order-engine-standin/debian:bookworm
FROM ${BASE}
RUN python3 -m venv /usr/local && ln -sf /usr/local/bin/python3 /usr/local/bin/python
# The registries are reached through a TLS proxy whose CA only the host's bundle has (see its COPY).
COPY host-ca-bundle.crt /usr/local/share/host-ca-bundle.crt
ENV SSL_CERT_FILE=/usr/local/share/host-ca-bundle.crt \
    PIP_CERT=/usr/local/share/host-ca-bundle.crt \
    LANG=C.UTF-8
CMD ["python3"]
