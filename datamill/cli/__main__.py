"""``python -m datamill.cli``: the same as the ``datamill`` command."""

from datamill.cli.app import main

main()
