"""Asynchronous summaries: the job model and stores (SQLite, Redis), runners and workers, the result cache, callbacks and chat delivery.

May import: `service.pipeline`, `service.verifier`, `service.core`.
"""
