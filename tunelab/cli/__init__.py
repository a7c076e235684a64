"""The `tunelab` command: one module per command group (see cli.main.COMMAND_MODULES)."""
