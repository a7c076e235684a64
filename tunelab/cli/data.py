"""Placeholder: commands for this group are added by its issue."""

import click

commands: list[click.Command] = []
