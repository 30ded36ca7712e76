"""A simulated OpenAI-compatible model server for tests and benchmarks (never imported by the service itself).

May import: `service.core`.
"""
