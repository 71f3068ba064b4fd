from datamill.distilabel.models import OpenAILLM
from datamill.distilabel.pipeline import Pipeline
from datamill.distilabel.steps import LoadDataFromHub
from datamill.distilabel.steps.tasks import TextGeneration

with Pipeline() as pipeline:
    load_data = LoadDataFromHub(output_mappings={"prompt": "instruction"})

    text_generation = TextGeneration(
        llm=OpenAILLM(
            model="gpt-3.5-turbo",
            base_url="http://127.0.0.1:8000/v1",
            use_offline_batch_generation=True,  # (1)
        )
    )

    load_data >> text_generation


if __name__ == "__main__":
    distiset = pipeline.run(
        parameters={
            load_data.name: {
                "repo_id": "./data/instruction-dataset",
                "split": "test",
                "batch_size": 500,
            },
        }
    )
