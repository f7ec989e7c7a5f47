"""``python -m modelchain``: the same as the ``modelchain`` command."""

from .cli import main

main()
