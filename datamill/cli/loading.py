"""Loading a pipeline from ``PIPELINE.py[:ClassName]``: import the file by path, pick the class,
instantiate it with no arguments.

Mistakes in the spec (no such file, no or several pipeline classes) are usage errors; an
exception raised by the user's own code while importing or constructing is a ``ConfigError``
naming the file and line, with the original exception chained for ``--debug``.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any

import typer

from datamill.errors import ConfigError, DatamillError

PIPELINE_METAVAR = "PIPELINE.py[:ClassName]"


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``path/to/file.py:Name`` → (path, "Name"); a spec without ``:Name`` → (path, None)."""
    path, sep, name = spec.rpartition(":")
    if sep and name.isidentifier() and path:
        return Path(path), name
    return Path(spec), None


def load_pipeline(spec: str) -> Any:
    """Import the file, find the pipeline class and return an instance of it."""
    path, class_name = split_spec(spec)
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="PIPELINE")
    module = _import_file(path)
    from datamill.pipeline.base import BatchedPipelineABC

    classes = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BatchedPipelineABC)
        and value is not BatchedPipelineABC
    }
    candidates = {name: cls for name, cls in classes.items() if cls.__module__ == module.__name__}
    if class_name is not None:
        cls = classes.get(class_name)  # a named class may also be one the file imports
        if cls is None:
            raise typer.BadParameter(
                f"{path} defines no pipeline class {class_name!r}; "
                f"pipeline classes there: {', '.join(sorted(candidates)) or 'none'}",
                param_hint="PIPELINE",
            )
    elif len(candidates) == 1:
        cls = next(iter(candidates.values()))
    elif not candidates:
        raise typer.BadParameter(f"{path} defines no BatchedPipelineABC subclass", param_hint="PIPELINE")
    else:
        raise typer.BadParameter(
            f"{path} defines {len(candidates)} pipeline classes ({', '.join(sorted(candidates))}); "
            f"name one: {path}:{sorted(candidates)[0]}",
            param_hint="PIPELINE",
        )
    return _call_user_code(path, f"creating {cls.__name__}()", cls)


def _import_file(path: Path) -> Any:
    name = f"datamill_user_pipeline_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"{path} cannot be imported as a Python file", param_hint="PIPELINE")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # so the pipeline can import modules beside it
    sys.modules[name] = module
    _call_user_code(path, "importing it", spec.loader.exec_module, module)
    return module


def _call_user_code(path: Path, what: str, function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except DatamillError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{path}{_user_line(path, exc)}: {type(exc).__name__} while {what}: {exc} "
            "(--debug shows the traceback)"
        ) from exc


def _user_line(path: Path, exc: BaseException) -> str:
    """``:LINE`` of the deepest frame of ``exc`` inside ``path``, or ``""``."""
    target = str(path.resolve())
    line = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if str(Path(frame.filename).resolve()) == target:
            line = f":{frame.lineno}"
    if not line and isinstance(exc, SyntaxError) and exc.lineno:
        line = f":{exc.lineno}"
    return line


def pipeline_storage(pipeline: Any) -> Any:
    """The ``BatchedFileStorage`` a compiled pipeline runs over (the one its steps write in)."""
    from datamill.pipeline.storage import BatchedFileStorage

    first_output = pipeline.step_paths()[0]
    for value in vars(pipeline).values():
        if isinstance(value, BatchedFileStorage) and value.step_path(0) == first_output:
            return value
    raise ConfigError("the pipeline's storage was not found among its attributes")
