"""Deployment: the local runner (`make run`), embedded servers, Dockerfile and compose support."""
