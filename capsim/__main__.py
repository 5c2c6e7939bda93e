"""``python -m capsim`` runs the command line."""

from .cli import main

main()
