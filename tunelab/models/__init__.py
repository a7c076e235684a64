"""Model registry (what models exist), loading (turning a spec into weights) and
the catalog (base models plus each project's fine-tuned models)."""
