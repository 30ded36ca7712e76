"""The stages of one summary, in flow order: ingest (fetch, boilerplate) → segment → chunk → summarize (llm, prompts, extractive, judge) → render.

May import: `service.verifier`, `service.core`.
"""
