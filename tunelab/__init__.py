"""tunelab: self-hosted, OpenAI-compatible fine-tuning, embeddings and retrieval.

Importing the package is cheap: torch and transformers are imported only by the
modules that run models (models.loading, training, inference, embeddings.engine).
"""

__version__ = "0.1.0"
