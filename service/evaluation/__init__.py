"""Measuring and training the verifier on labelled data (`eval-verifier`, `train-verifier`): sits on top of what it evaluates.

May import: `service.pipeline`, `service.verifier`, `service.core`; nothing imports it but the CLI.
"""
