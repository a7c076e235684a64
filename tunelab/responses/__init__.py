"""The Responses API service: grounded answers (file_search) over the chat engine."""
