"""``python -m tallystick`` is the ``tally`` command."""

from tallystick.cli import main

main()
