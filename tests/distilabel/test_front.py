"""The distilabel-style front on real runs: graph, steps, mappings, parameters, results, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from datamill.distilabel import (
    AnthropicLLM,
    Distiset,
    LoadDataFromDicts,
    LoadDataFromFileSystem,
    LoadDataFromHub,
    OpenAILLM,
    Pipeline,
    TextGeneration,
)
from datamill.distilabel.exceptions import DistilabelOfflineBatchGenerationNotFinishedException
from datamill.errors import ConfigError, OfflineBatchGenerationNotFinished

ROWS = [{"instruction": f"question {i}", "topic": f"topic {i % 3}"} for i in range(10)]


def train_rows(distiset: Distiset, config: str = "default") -> list[dict]:
    return list(distiset[config]["train"])


def test_a_linear_pipeline_writes_generation_and_model_name_per_row(simulator, tmp_path: Path) -> None:
    with Pipeline(name="basic", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        generate = TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base))
        load >> generate
    distiset = pipeline.run()
    rows = train_rows(distiset)
    assert [row["instruction"] for row in rows] == [row["instruction"] for row in ROWS]
    assert all(row["generation"].endswith(row["instruction"]) for row in rows)
    assert {row["model_name"] for row in rows} == {"gpt-4o-mini"}
    assert (load.name, generate.name) == ("load_data_from_dicts_0", "text_generation_0")
    assert (tmp_path / "basic" / "text_generation_0_step1.jsonl").exists()
    assert simulator.stats()["requests"] == len(ROWS)

    # A rerun resumes from the committed files: nothing is sent again.
    assert train_rows(pipeline.run(use_cache=True)) == rows
    assert simulator.stats()["requests"] == len(ROWS)


def test_template_columns_system_prompt_and_mappings(simulator, tmp_path: Path) -> None:
    data = [{"question": "why is the sky blue", "about": "light", "system_prompt": "be brief"}, ROWS[0]]
    data[1] = {"question": "what is rain", "about": "weather"}
    with Pipeline(name="templated", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=data, output_mappings={"question": "q"})
        generate = TextGeneration(
            llm=OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base),
            system_prompt="You answer questions.",
            template="Answer about {{ about }}: {{ question }}",
            columns=["question", "about"],
            input_mappings={"question": "q"},
            output_mappings={"generation": "answer", "model_name": "model"},
        )
        load >> generate
    rows = train_rows(pipeline.run())
    assert rows[0]["answer"].endswith("Answer about light: why is the sky blue")
    assert rows[1]["answer"].endswith("Answer about weather: what is rain")
    assert set(rows[0]) == {"q", "about", "system_prompt", "answer", "model"}
    # The row's own system_prompt wins over the task's: the requests differ, so do the replies' hashes.
    assert rows[0]["answer"].split("]")[0] != rows[1]["answer"].split("]")[0]


def test_num_generations_gives_rows_or_grouped_lists(simulator, tmp_path: Path) -> None:
    with Pipeline(name="samples", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=ROWS[:3])
        llm = OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base)
        load >> TextGeneration(llm=llm, num_generations=2, name="flat")
        load >> TextGeneration(llm=llm, num_generations=2, group_generations=True, name="grouped")
    distiset = pipeline.run()
    assert sorted(distiset) == ["flat", "grouped"]
    assert len(train_rows(distiset, "flat")) == 6
    grouped = train_rows(distiset, "grouped")
    assert len(grouped) == 3 and all(len(row["generation"]) == 2 for row in grouped)


def test_one_step_feeding_several_runs_each_branch_from_its_parent_output(simulator, tmp_path: Path) -> None:
    with Pipeline(name="fork", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=ROWS[:4])
        llm = OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base)
        first = TextGeneration(llm=llm, name="first", output_mappings={"generation": "draft"})
        polish = TextGeneration(llm=llm, name="polish", columns="draft", template="Polish: {{ draft }}")
        shorten = TextGeneration(llm=llm, name="shorten", columns="draft", template="Shorten: {{ draft }}")
        load >> first >> [polish, shorten]
    distiset = pipeline.run()
    assert sorted(distiset) == ["polish", "shorten"]
    for config, verb in (("polish", "Polish"), ("shorten", "Shorten")):
        for row in train_rows(distiset, config):
            assert row["generation"].endswith(f"{verb}: {row['draft']}")
            assert row["draft"].endswith(row["instruction"])
    assert simulator.stats()["requests"] == 3 * 4


def test_runtime_parameters_reach_the_loader_the_task_and_the_llm(simulator, tmp_path: Path) -> None:
    with Pipeline(name="params", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        generate = TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1"))
        load >> generate
    distiset = pipeline.run(
        parameters={
            load.name: {"batch_size": 4},
            generate.name: {
                "input_batch_size": 3,
                "llm": {"base_url": simulator.openai_base, "generation_kwargs": {"temperature": 0.2}},
            },
        }
    )
    assert len(train_rows(distiset)) == len(ROWS)
    assert generate.llm.request_params() == {"temperature": 0.2, "max_tokens": 128}
    with pytest.raises(ConfigError, match="no runtime parameter"):
        pipeline.run(parameters={generate.name: {"batch_size": 3}})
    with pytest.raises(ConfigError, match="name no step"):
        pipeline.run(parameters={"text_generation_9": {}})
    with pytest.raises(ConfigError, match="generation_kwargs has no"):
        pipeline.run(parameters={generate.name: {"llm": {"generation_kwargs": {"max_tokenz": 5}}}})


def test_openai_generation_kwargs_take_distilabel_names() -> None:
    llm = OpenAILLM(model="m", generation_kwargs={"max_new_tokens": 512, "top_p": 0.9, "stop": ["\n"]})
    assert llm.request_params() == {"max_tokens": 512, "top_p": 0.9, "stop": ["\n"]}
    with pytest.raises(ConfigError, match="max_tokens"):
        OpenAILLM(model="m", generation_kwargs={"max_tokens": 5})


def test_anthropic_llm_runs_through_the_messages_api(simulator, tmp_path: Path) -> None:
    with Pipeline(name="claude", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=ROWS[:3])
        llm = AnthropicLLM(
            model="claude-haiku-4-5", base_url=simulator.anthropic_base, generation_kwargs={"top_k": 5}
        )
        load >> TextGeneration(llm=llm, system_prompt="Be kind.")
    rows = train_rows(pipeline.run())
    assert all(row["generation"].endswith(row["instruction"]) for row in rows)
    assert llm.request_params() == {"top_k": 5, "max_tokens": 128}


def test_load_data_from_hub_reads_a_local_dataset_directory_and_a_saved_one(
    simulator, tmp_path: Path
) -> None:
    import datasets

    folder = tmp_path / "local-dataset"
    folder.mkdir()
    (folder / "test.jsonl").write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(5)))
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([{"prompt": "s0"}, {"prompt": "s1"}])}
    ).save_to_disk(str(saved))
    with Pipeline(name="hub", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromHub(
            repo_id=str(folder), split="test", num_examples=3, output_mappings={"prompt": "instruction"}
        )
        load >> TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base))
    assert [row["instruction"] for row in train_rows(pipeline.run())] == ["p0", "p1", "p2"]
    rows = train_rows(
        pipeline.run(parameters={load.name: {"repo_id": str(saved), "split": "train", "num_examples": None}})
    )
    assert [row["instruction"] for row in rows] == ["s0", "s1"]


def test_load_data_from_file_system_reads_jsonl_and_csv(simulator, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("instruction,n\nfirst,1\nsecond,2\n")
    with Pipeline(name="files", cache_dir=tmp_path / "cache") as pipeline:
        load = LoadDataFromFileSystem(data_files=tmp_path / "rows.csv")
        load >> TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base))
    assert [row["instruction"] for row in train_rows(pipeline.run())] == ["first", "second"]


def test_the_loader_file_is_rewritten_only_when_the_rows_change(simulator, tmp_path: Path) -> None:
    data = [dict(row) for row in ROWS[:3]]
    with Pipeline(name="stable", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=data)
        load >> TextGeneration(llm=OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base))
    pipeline.run()
    source = tmp_path / "stable" / f"{load.name}.jsonl"
    before = (source.stat().st_mtime_ns, source.read_bytes())
    pipeline.run()
    assert (source.stat().st_mtime_ns, source.read_bytes()) == before
    data.append({"instruction": "one more", "topic": "x"})
    assert len(train_rows(pipeline.run())) == 4
    assert simulator.stats()["requests"] == 4


def test_distiset_saves_loads_and_pushes_through_datasets(simulator, tmp_path: Path, monkeypatch) -> None:
    import datasets

    with Pipeline(name="save", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(data=ROWS[:2]) >> TextGeneration(
            llm=OpenAILLM(model="gpt-4o-mini", base_url=simulator.openai_base)
        )
    distiset = pipeline.run()
    distiset.save_to_disk(tmp_path / "out")
    assert train_rows(Distiset.load_from_disk(tmp_path / "out")) == train_rows(distiset)
    pushed: list[tuple] = []
    monkeypatch.setattr(
        datasets.DatasetDict, "push_to_hub", lambda self, repo, **kw: pushed.append((repo, kw["config_name"]))
    )
    distiset.push_to_hub("me/data", private=True)
    assert pushed == [("me/data", "default")]


def test_default_cache_dir_follows_distilabel_cache_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DISTILABEL_CACHE_DIR", str(tmp_path))
    with Pipeline() as pipeline:
        LoadDataFromDicts(data=ROWS) >> TextGeneration(llm=OpenAILLM(model="m"))
    assert pipeline.cache_path() == tmp_path / "pipeline_load_data_from_dicts_0_text_generation_0"


def test_what_the_engine_cannot_run_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside a pipeline"):
        LoadDataFromDicts(data=ROWS)
    with Pipeline(name="merge", cache_dir=tmp_path) as pipeline:
        load = LoadDataFromDicts(data=ROWS)
        a = TextGeneration(llm=OpenAILLM(model="m"), name="a")
        b = TextGeneration(llm=OpenAILLM(model="m"), name="b")
        c = TextGeneration(llm=OpenAILLM(model="m"), name="c")
        load >> [a, b] >> c
    with pytest.raises(ConfigError, match="several others"):
        pipeline.run()
    with pytest.raises(ConfigError, match="do not appear in the template"):
        with Pipeline(name="bad", cache_dir=tmp_path):
            TextGeneration(llm=OpenAILLM(model="m"), columns=["text"])


def test_the_exception_name_is_datamill_not_finished_error() -> None:
    assert DistilabelOfflineBatchGenerationNotFinishedException is OfflineBatchGenerationNotFinished
    assert os.environ.get("DATAMILL_FAULT") is None


def test_anthropic_offline_batch_generation_blocks_until_the_message_batch_ends(
    make_simulator, tmp_path
) -> None:
    sim = make_simulator(
        batch_validating_seconds=0.01, batch_processing_seconds=0.2, batch_finalizing_seconds=0.01
    )
    with Pipeline(name="claude-batch", cache_dir=tmp_path) as pipeline:
        llm = AnthropicLLM(
            model="claude-haiku-4-5",
            base_url=sim.anthropic_base,
            use_offline_batch_generation=True,
            offline_batch_generation_block_until_done=0.1,
        )
        LoadDataFromDicts(data=ROWS) >> TextGeneration(llm=llm)
    rows = train_rows(pipeline.run())
    assert all(row["generation"].endswith(row["instruction"]) for row in rows) and len(rows) == len(ROWS)
    stats = sim.stats()
    assert (stats["batches_created"], stats["batch_requests"], stats["requests"]) == (1, len(ROWS), 0)


def test_an_empty_loader_gives_an_empty_result(simulator, tmp_path: Path) -> None:
    with Pipeline(name="empty", cache_dir=tmp_path) as pipeline:
        LoadDataFromDicts(data=[]) >> TextGeneration(llm=OpenAILLM(model="m", base_url=simulator.openai_base))
    assert train_rows(pipeline.run()) == []
