"""`python -m nwc` runs the command line."""

from nwc.cli.entry import main

main()
