"""Pydantic models of the OpenAI wire format only: no logic, no storage."""
