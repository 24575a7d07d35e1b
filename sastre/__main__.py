"""`python -m sastre` runs the `sastre` command."""

from sastre.cli import main

main()
