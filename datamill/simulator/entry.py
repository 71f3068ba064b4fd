"""The command-line entry shared by ``datamill simulate`` and ``python -m datamill.simulator``.

Its first line on stdout is ``datamill simulator listening on http://HOST:PORT``;
``run_simulator_process`` reads the port from it, so the line's form is a contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from datamill.simulator.knob_flags import parse_args
from datamill.simulator.server import LISTENING_PREFIX, SimulatorStartError, serve_forever


def serve_command_line(
    argv: Sequence[str] | None, prog: str, say: Callable[[str], None], complain: Callable[[str], None]
) -> int:
    """Parse ``argv``, serve until SIGINT/SIGTERM, and return the exit code (1 when it cannot start).

    ``say`` prints the listening line (flushed at once); ``complain`` reports a start failure.
    """
    config, host, port = parse_args(argv, prog=prog)
    try:
        serve_forever(config, host, port, on_ready=lambda url: say(LISTENING_PREFIX + url))
    except SimulatorStartError as exc:
        complain(f"{prog}: {exc}")
        return 1
    return 0
