"""`python -m rewards` is the `rewards` command."""

from rewards.cli import main

main()
