"""The ``modelchain`` command line: one module per command group, joined in
``modelchain.cli.main``; errors become exit codes in ``main`` and nowhere else."""

from .main import cli, main

__all__ = ["cli", "main"]
