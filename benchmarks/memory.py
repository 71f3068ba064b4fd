"""Peak memory against dataset size, and the time a resume at 90% takes to reach new rows.

One ``PromptedGenerator`` step over 100,000 and 1,000,000 rows against the simulator at 0 ms
latency; each run is a child process that reports its peak RSS. Then the 1M-row cache is put
back to where a kill at 90% of the step would have left it (the commits past 90% forgotten,
as the engine's own rewind does) and a fresh process resumes: the time from its launch to its
first new committed batch is measured (Python start-up and imports included).

The same rows are also run from a folder written by ``Dataset.save_to_disk``: given as its path
(read by pyarrow, ``datasets`` not imported) and as the ``datasets.Dataset`` that
``load_from_disk`` returns. Each child also reports its RSS after ``compile()`` (imports done,
input opened), so the fixed cost of importing ``datasets`` can be told apart from growth with
the number of rows.

    python benchmarks/memory.py [--rows 1000000] [--small 100000] [--no-datasets]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import OneStepPipeline, write_input  # noqa: E402


class FirstCommitClock:
    """A progress sink that records the wall time of the first committed batch."""

    def __init__(self) -> None:
        self.first_commit: float | None = None

    def step_started(self, step, total_rows, done_rows) -> None:
        pass

    def rows_committed(self, step, done_rows, dispatch) -> None:
        if self.first_commit is None:
            self.first_commit = time.time()

    def step_finished(self, step) -> None:
        pass

    def run_finished(self, summary) -> None:
        pass


def child(args: argparse.Namespace) -> None:
    clock = FirstCommitClock()
    source: object = Path(args.input)
    if args.kind == "dataset":
        import datasets

        source = datasets.load_from_disk(args.input)
    pipeline = OneStepPipeline(source, Path(args.cache), args.url, max_workers=64)
    pipeline.compile()
    compiled_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = pipeline.forward(batch_size=256, progress=clock)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "peak_rss_mb": peak_mb,
                "compiled_rss_mb": compiled_mb,
                "first_commit": clock.first_commit,
                "rows_this_run": summary.steps[0].rows_this_run,
                "seconds": summary.seconds,
            }
        )
    )


def run_child(input_path: Path, cache: Path, url: str, kind: str = "jsonl") -> dict:
    launched = time.time()
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--kind",
            kind,
            "--input",
            str(input_path),
            "--cache",
            str(cache),
            "--url",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["launched"] = launched
    return result


def rewind_to_fraction(cache: Path, fraction: float) -> int:
    """Forget the commits past ``fraction`` of the step, as a kill there would have left them."""
    from datamill.core.state import StateDB

    state = StateDB(cache / "bench.state.db")
    try:
        total = state.load_position(0).in_rows
        keep = state.commit_for_input_row(0, int(total * fraction))
        state.rewind_steps({0: keep})
        return state.load_position(0).in_rows
    finally:
        state.close()


def save_as_dataset(jsonl: Path, folder: Path) -> Path:
    """The JSONL rows as a ``save_to_disk`` folder (built in a child, so its memory is not ours)."""
    code = (
        "import sys, datasets; datasets.disable_progress_bars(); "
        "datasets.Dataset.from_json(sys.argv[1], cache_dir=sys.argv[2] + '.cache').save_to_disk(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(jsonl), str(folder)], check=True)
    return folder


def report(label: str, result: dict) -> None:
    print(
        f"{label} peak RSS {result['peak_rss_mb']:.0f} MB (after compile() {result['compiled_rss_mb']:.0f} MB) "
        f"in {result['seconds']:.0f} s"
    )


def _growth(result: dict) -> float:
    """RSS the run added on top of imports and the opened input."""
    return result["peak_rss_mb"] - result["compiled_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--no-datasets", action="store_true", help="skip the save_to_disk / Dataset runs")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--kind", choices=("jsonl", "saved", "dataset"), default="jsonl")
    parser.add_argument("--input")
    parser.add_argument("--cache")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from datamill.simulator.server import run_simulator_process

    results: dict[int, dict] = {}
    with run_simulator_process(latency_mean=0.0) as sim, tempfile.TemporaryDirectory() as tmp:
        url = sim.openai_base + "/chat/completions"
        for rows in (args.small, args.rows):
            path = write_input(Path(tmp) / f"in_{rows}.jsonl", rows, tag=f"m{rows}-")
            results[rows] = run_child(path, Path(tmp) / f"cache_{rows}", url)
            report(f"{rows:>9} rows, JSONL:", results[rows])
            if not args.no_datasets:
                saved = save_as_dataset(path, Path(tmp) / f"dataset_{rows}")
                for kind, label in (("saved", "save_to_disk folder"), ("dataset", "Dataset object")):
                    result = run_child(saved, Path(tmp) / f"{kind}cache_{rows}", url, kind=kind)
                    report(f"{rows:>9} rows, {label}:", result)
                    ratio = result["peak_rss_mb"] / results[rows]["peak_rss_mb"]
                    growth = _growth(result) / max(_growth(results[rows]), 1.0)
                    print(f"          / JSONL: peak RSS {ratio:.2f}, growth after compile() {growth:.2f}")
        big_cache = Path(tmp) / f"cache_{args.rows}"
        kept = rewind_to_fraction(big_cache, 0.9)
        resumed = run_child(Path(tmp) / f"in_{args.rows}.jsonl", big_cache, url)
    small, big = results[args.small]["peak_rss_mb"], results[args.rows]["peak_rss_mb"]
    to_first = resumed["first_commit"] - resumed["launched"]
    print(
        f"peak RSS {args.rows} rows / {args.small} rows = {big / small:.2f}   (target ≤ 1.20; {big:.0f} MB, target ≤ 300)"
    )
    print(
        f"resume from row {kept} of {args.rows}: first new commit {to_first:.2f} s after launch (target ≤ 2 s)"
    )


if __name__ == "__main__":
    main()
