"""The Batch API: many requests from one input file, run in the background."""
