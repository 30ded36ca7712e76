"""Benchmarks: citesum against LangChain on one simulated OpenAI-compatible model (`python -m bench`)."""
