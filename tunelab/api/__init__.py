"""The HTTP interface: create_app(settings) builds the FastAPI app."""
