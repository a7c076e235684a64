"""Training data: reading files, normalising formats, validation, prepare-data fixes."""
