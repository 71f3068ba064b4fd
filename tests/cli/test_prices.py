"""What the CLI shows for a model whose price is unknown: ``—``, one warning, never ``$0``."""

from __future__ import annotations

from conftest import PIPELINE_SOURCE, Project

UNKNOWN_MODEL_SOURCE = PIPELINE_SOURCE.replace(
    'api_url=os.environ["TEST_API_URL"],', 'api_url=os.environ["TEST_API_URL"], model_name="gpt-4o-minii",'
)


def test_run_and_estimate_show_an_unknown_price_as_a_dash_with_one_warning(project: Project) -> None:
    assert UNKNOWN_MODEL_SOURCE != PIPELINE_SOURCE
    (project.root / "misspelt.py").write_text(UNKNOWN_MODEL_SOURCE, encoding="utf-8")

    estimate = project.datamill("estimate", "misspelt.py")
    assert estimate.returncode == 0, estimate.stderr
    assert "—" in estimate.stdout and "$0" not in estimate.stdout
    assert "no price is known for model 'gpt-4o-minii'" in " ".join(estimate.stdout.split())

    run = project.datamill("run", "misspelt.py")
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "no price is known" in line]
    assert len(warnings) == 1 and "gpt-4o-minii" in warnings[0] and "price_per_million" in warnings[0]
    assert "—" in run.stdout and "$0" not in run.stdout
