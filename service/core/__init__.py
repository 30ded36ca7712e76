"""Plumbing every wing shares: settings, errors, the data models, logs, metrics, the circuit breaker, thread offload.

May import: nothing else in `service` (the bottom layer).
"""
