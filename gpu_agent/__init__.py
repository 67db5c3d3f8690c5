"""Per-node GPU agent: reads NVML, attributes GPUs to pods, exports Prometheus metrics."""
