"""Embeddings: the model behind /v1/embeddings and vector stores, with micro-batching."""
