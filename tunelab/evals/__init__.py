"""Evals: graded comparisons of models on your rows (OpenAI's /v1/evals), with a
background runner that survives restarts."""
