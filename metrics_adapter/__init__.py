"""Inbound servers: Kubernetes external metrics API, KEDA external scaler and metrics-api.

They read only the latest decisions; they never query Prometheus on the request path.
"""
