"""Every input kind streams its rows, seeks to a position it handed out, and has an identity that
changes with its content and only then.

Datasets are built locally (``Dataset.from_dict``, ``save_to_disk``, a folder of JSON lines read
by ``load_dataset``) with ``HF_DATASETS_OFFLINE=1``: nothing here needs a network.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.input_kinds import KINDS, jsonl_bytes, make_input, write_input

from datamill.core.inputs import InputSource, resolve_input
from datamill.core.rowfiles import count_rows, open_reader, read_head
from datamill.errors import ConfigError, InputFileError

ROWS = 2600  # more than two of the row-indexed sources' chunks


def rows(count: int = ROWS) -> list[dict[str, Any]]:
    return [{"id": i, "text": f"sentence é {i}", "tags": [i % 3]} for i in range(count)]


@pytest.fixture(autouse=True)
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_streams_every_row_and_resumes_at_a_position_it_handed_out(
    tmp_path: Path, kind: str
) -> None:
    items = rows()
    source = resolve_input(make_input(kind, tmp_path, items))
    assert isinstance(source, InputSource)
    assert open_reader(source) is source

    read = list(source.iter_from(0))
    assert [row for row, _ in read] == items
    for cut in (1, 1023, 1024, 1500, ROWS - 1):
        rest = [row for row, _ in source.iter_from(read[cut - 1][1])]
        assert rest == items[cut:], f"resume after row {cut}"
    assert list(source.iter_from(read[-1][1])) == []
    assert read_head(source, 3) == items[:3]
    if kind != "iterable_dataset":  # a stream does not know its length without reading it
        assert count_rows(source) == ROWS


@pytest.mark.parametrize("kind", KINDS)
def test_identity_is_stable_for_the_same_content_and_changes_with_it(tmp_path: Path, kind: str) -> None:
    changed_rows = rows(50)
    changed_rows[0]["text"] = "a different first sentence"
    first = build(kind, tmp_path / "a", rows(50))
    again = build(kind, tmp_path / "b", rows(50))
    changed = build(kind, tmp_path / "c", changed_rows)
    if kind == "hub_spec":  # its identity names the dataset (here its folder): load the same one again
        again = resolve_input(first.label)
    assert first.identity() == again.identity()
    assert first.identity() != changed.identity()


def build(kind: str, folder: Path, items: list[dict[str, Any]]) -> InputSource:
    folder.mkdir()
    source = resolve_input(make_input(kind, folder, items))
    assert source is not None
    return source


def test_json_lines_plain_files_and_datamill_parquet_step_folders_stay_with_the_row_file_readers(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = tmp_path / "lines.json"
    lines.write_bytes(jsonl_bytes(rows(3)))
    assert resolve_input(lines) is None
    assert [row["id"] for row in read_head(lines)] == [0, 1, 2]
    assert resolve_input(tmp_path / "in.jsonl") is None
    assert resolve_input(str(tmp_path / "in.csv")) is None
    step_folder = tmp_path / "run_step1.parquet"
    step_folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows(3)), step_folder / "part-000000.parquet")
    assert resolve_input(step_folder) is None


def test_a_json_array_element_longer_than_the_read_chunk_and_a_bom_are_read(tmp_path: Path) -> None:
    big = [{"id": 0, "text": "x" * (3 << 20)}, {"id": 1, "text": "short"}]
    path = tmp_path / "big.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(big).encode())
    source = resolve_input(path)
    read = list(source.iter_from(0))
    assert [row["id"] for row, _ in read] == [0, 1]
    assert read[0][0]["text"] == big[0]["text"]
    assert [row for row, _ in source.iter_from(read[0][1])] == [big[1]]


def test_an_empty_json_array_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text(" [ ]\n")
    source = resolve_input(path)
    assert list(source.iter_from(0)) == [] and source.count() == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"id": 0}, 3]', "not '{'"),
        ('[{"id": 0} {"id": 1}]', "expected ',' or ']'"),
        ('[{"id": 0}, {"id": ]', "not valid JSON"),
        ('[{"id": 0}, {"id": 1}', "cut short"),
    ],
)
def test_a_malformed_json_array_names_the_file_and_byte(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    source = resolve_input(path)
    with pytest.raises(InputFileError, match=message) as caught:
        list(source.iter_from(0))
    assert str(path) in str(caught.value) and "byte" in str(caught.value)


def test_a_malformed_compressed_line_names_its_uncompressed_byte(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": 0}\n{"id": \n'))
    with pytest.raises(InputFileError, match="uncompressed byte 10"):
        list(resolve_input(path).iter_from(0))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: [{"id": 0}, "text"], "item 1 of the list is a str"),
        (lambda tmp: tmp, "no .parquet file"),
        (lambda tmp: "hf:", "hf:NAME"),
        (lambda tmp: "hf:name@", "hf:NAME"),
        (lambda tmp: "hf:" + str(tmp / "missing-dataset"), "load_dataset"),
        (lambda tmp: tmp / "in.csv.gz", "compressed .csv"),
    ],
)
def test_unusable_inputs_say_what_to_give_instead(
    tmp_path: Path, make: Callable[[Path], Any], message: str
) -> None:
    with pytest.raises((ConfigError, InputFileError), match=message):
        list(resolve_input(make(tmp_path)).iter_from(0))


def test_a_dataset_dict_and_an_unknown_type_are_refused_with_the_accepted_forms(tmp_path: Path) -> None:
    import datasets

    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows(2))})
    with pytest.raises(ConfigError, match=r"dataset\['train'\]"):
        resolve_input(splits)
    splits.save_to_disk(str(tmp_path / "dict"))
    with pytest.raises(ConfigError, match="one split's folder"):
        resolve_input(tmp_path / "dict")
    with pytest.raises(ConfigError, match="hf:NAME"):
        resolve_input(42)


def test_a_hub_spec_parses_name_config_and_split(tmp_path: Path) -> None:
    from datamill.core.hf_inputs import parse_hf_spec

    assert parse_hf_spec("hf:openai/gsm8k") == ("openai/gsm8k", None, "train")
    assert parse_hf_spec("hf:openai/gsm8k:main@test") == ("openai/gsm8k", "main", "test")
    assert parse_hf_spec("hf:imdb@unsupervised") == ("imdb", None, "unsupervised")


def test_without_the_datasets_package_an_hf_input_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['datasets'] = None\n"  # what an environment without it raises
        "from datamill.core.inputs import resolve_input\n"
        "from datamill.errors import ConfigError\n"
        "try:\n"
        "    list(resolve_input('hf:openai/gsm8k').iter_from(0))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "needs the datasets package: pip install 'datamill[hf]'" in out


@pytest.mark.parametrize("name", ["cut.jsonl.gz", "cut.jsonl.zst", "cut.json.gz"])
def test_a_damaged_or_cut_compressed_file_is_an_input_error_naming_it(tmp_path: Path, name: str) -> None:
    zstandard = pytest.importorskip("zstandard")
    payload = jsonl_bytes(rows(2000)) if "jsonl" in name else json.dumps(rows(2000)).encode()
    whole = zstandard.ZstdCompressor().compress(payload) if name.endswith(".zst") else gzip.compress(payload)
    path = tmp_path / name
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFileError, match=name):
        list(resolve_input(path).iter_from(0))


def test_a_zstandard_file_of_several_frames_is_read_whole(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    compressor = zstandard.ZstdCompressor()
    items = rows(3000)
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(
        compressor.compress(jsonl_bytes(items[:1000])) + compressor.compress(jsonl_bytes(items[1000:]))
    )
    source = resolve_input(path)
    assert [row for row, _ in source.iter_from(0)] == items
    assert source.count() == 3000


def test_a_saved_dataset_folder_is_read_without_importing_datasets(tmp_path: Path) -> None:
    folder = write_input("saved_dataset", tmp_path, rows(3))
    code = (
        "import sys\n"
        "from datamill.core.inputs import resolve_input\n"
        f"source = resolve_input({folder!r})\n"
        "print([row['id'] for row, _ in source.iter_from(1)], source.identity()['rows'], 'datasets' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == ["[1,", "2]", "3", "False"]


def test_a_saved_folder_whose_state_lists_no_data_files_says_to_load_it_with_datasets(tmp_path: Path) -> None:
    folder = Path(write_input("saved_dataset", tmp_path, rows(3)))
    (folder / "state.json").write_text('{"_fingerprint": "x"}')
    with pytest.raises(InputFileError, match=r"load_from_disk\(folder\)"):
        resolve_input(folder)


def test_a_hub_source_built_directly_is_what_a_front_hands_the_storage(tmp_path: Path) -> None:
    from datamill import BatchedFileStorage
    from datamill.core.hf_inputs import HubDatasetSource

    folder = write_input("hub_spec", tmp_path, rows(5)).removeprefix("hf:")
    source = HubDatasetSource(folder, split="train")
    storage = BatchedFileStorage(source, cache_path=str(tmp_path / "cache"))
    assert storage.input_path is source and source.label == f"hf:{folder}@train"
    assert [row["id"] for row in read_head(storage.input_path)] == [0, 1, 2, 3, 4]
    assert HubDatasetSource(folder, revision="v1").identity()["revision"] == "v1"
    with pytest.raises(InputFileError, match=r"split='validation'.*check the name, config and split"):
        list(HubDatasetSource(folder, split="validation").iter_from(0))


def test_the_same_rows_gzipped_again_keep_their_identity(tmp_path: Path) -> None:
    """gzip writes the time into its header: compressing the same rows a second later must not
    make the input look changed (and the steps stale)."""
    rows = b"".join(b'{"id": %d, "text": "row %d"}\n' % (i, i) for i in range(50))

    def gzipped(name: str, content: bytes, mtime: int) -> Any:
        path = tmp_path / name
        with gzip.GzipFile(path, "wb", mtime=mtime) as handle:
            handle.write(content)
        return resolve_input(path)

    first = gzipped("a.jsonl.gz", rows, 1_000_000)
    second = gzipped("b.jsonl.gz", rows, 2_000_000)
    assert (tmp_path / "a.jsonl.gz").read_bytes() != (tmp_path / "b.jsonl.gz").read_bytes()
    assert first.identity() == second.identity()
    changed = gzipped("c.jsonl.gz", rows.replace(b"row 7", b"row seven"), 1_000_000)
    assert changed.identity() != first.identity()
