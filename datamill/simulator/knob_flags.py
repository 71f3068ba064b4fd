"""The simulator's knobs as command-line flags, derived from ``SimulatorConfig``'s fields.

``datamill simulate``, ``python -m datamill.simulator`` and ``run_simulator_process`` all go
through here, so a knob is never listed twice: ``--latency-mean 0.01`` is the field
``latency_mean``; optional knobs take ``none``; ``--models`` takes a comma-separated list.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from datamill.simulator.config import SimulatorConfig, knob_base_type

DEFAULT_HOST = "127.0.0.1"


def flag_name(knob: str) -> str:
    """``latency_mean`` -> ``--latency-mean``."""
    return "--" + knob.replace("_", "-")


def build_parser(prog: str = "datamill simulate") -> argparse.ArgumentParser:
    """An argument parser with ``--host``, ``--port`` and one flag per knob."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a simulated OpenAI/Anthropic provider (chat, embeddings, files, batches) over HTTP.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    knobs = parser.add_argument_group("knobs")
    for spec in dataclasses.fields(SimulatorConfig):
        base, optional = knob_base_type(spec.name)
        kind = "LIST" if base is tuple else base.__name__.upper()
        suffix = " (or none)" if optional else ""
        knobs.add_argument(
            flag_name(spec.name),
            dest=spec.name,
            default=argparse.SUPPRESS,
            metavar=kind,
            help=f"{spec.metadata.get('help', '')}{suffix} (default: {_show(spec.default)})",
        )
    return parser


def parse_args(
    argv: Sequence[str] | None = None, prog: str = "datamill simulate"
) -> tuple[SimulatorConfig, str, int]:
    """Parse a command line into ``(config, host, port)``; bad values exit with a usage error."""
    parser = build_parser(prog)
    namespace = vars(parser.parse_args(argv))
    host = namespace.pop("host")
    port = namespace.pop("port")
    knobs = {name: None if value.lower() in ("none", "null") else value for name, value in namespace.items()}
    try:
        config = SimulatorConfig().with_knobs(**knobs)
    except (KeyError, ValueError) as exc:
        parser.error(str(exc))
    return config, host, port


def config_to_argv(config: SimulatorConfig) -> list[str]:
    """The flags that reproduce ``config`` (only knobs that differ from their defaults)."""
    default = SimulatorConfig()
    argv: list[str] = []
    for spec in dataclasses.fields(SimulatorConfig):
        value = getattr(config, spec.name)
        if value != getattr(default, spec.name):
            argv += [flag_name(spec.name), _show(value)]
    return argv


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)
