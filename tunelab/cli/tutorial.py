"""Placeholder: the tutorial commands (quickstart, classify, grounded data) are added by issue 7."""

import click

commands: list[click.Command] = []
