"""`python -m nwc` runs the command line."""

from nwc.cli.main import main

main()
