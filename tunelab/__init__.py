"""tunelab: self-hosted, OpenAI-compatible fine-tuning, embeddings and retrieval.

Importing the package is cheap: torch and transformers are imported only by the
modules that run models (models.loading, the training process, the inference
engine and worker, the embedding service's model workers), and only when they run.
"""

__version__ = "0.1.0"
