"""The embedded checker: a summary sentence and its evidence → a verdict with a score and a reason (pure, no I/O).

May import: `service.core` only. Its weights and word lists live in `data/`.
"""
