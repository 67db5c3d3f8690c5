"""The sidecar process: outbound adapters, control loop, settings and the composition root."""
