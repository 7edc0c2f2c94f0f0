"""`python -m discmed` runs the command line."""

from discmed.cli import main

main()
