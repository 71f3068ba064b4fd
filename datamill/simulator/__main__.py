"""``python -m datamill.simulator --port 0 [knob flags]``: the same as ``datamill simulate``."""

from __future__ import annotations

import sys

from datamill.simulator.entry import serve_command_line


def main() -> int:
    """Serve until interrupted; see ``entry.serve_command_line``."""
    return serve_command_line(
        None,
        "python -m datamill.simulator",
        say=lambda line: print(line, flush=True),
        complain=lambda line: print(line, file=sys.stderr, flush=True),
    )


if __name__ == "__main__":
    sys.exit(main())
