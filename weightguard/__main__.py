"""``python -m weightguard`` runs the CLI."""

from weightguard.cli import main

main()
