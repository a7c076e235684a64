"""The 2023 API surface (openai 0.27/0.28): legacy fine-tunes and engines, as views
over today's services."""
