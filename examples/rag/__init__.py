"""Gumbel Reranking with a real reader language model (an example, not part of the library)."""
