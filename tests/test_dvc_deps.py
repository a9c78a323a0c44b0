"""dvc.yaml's stage deps cover the code each stage runs: every ftlab module that the stage's command
imports, directly or through other modules, function-level imports included. Editing any of them
must re-run the stage; a module missing from its deps leaves stale results marked up to date.

The imports are read from the source by ``ftlab.source`` (the walk that a cell's identity hashes
too), not listed here, so a new module is checked as soon as a stage imports it. The train stage
depends on its cell's identity file, which the plan stage writes: its code is covered there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ftlab.source import stage_code, stage_files

ROOT = Path(__file__).resolve().parents[1]


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps if isinstance(d, str))


def _spec(stage: str) -> dict:
    spec = dvc_stages()[stage]
    return spec.get("do", spec)  # foreach stages


@pytest.mark.parametrize("stage", [s for s in dvc_stages() if s != "train"])
def test_every_imported_module_is_a_dep_of_its_stage(stage):
    spec = _spec(stage)
    command = spec["cmd"].split()[1]  # "ftlab <command> ..."
    modules = stage_code(command)
    assert {"ftlab.cli", "ftlab.stages", "ftlab.config"} <= modules.keys()  # the analysis found the entry points
    missing = sorted(str(p.relative_to(ROOT)) for p in stage_files(command) if not covered(p, spec["deps"]))
    assert not missing, f"dvc.yaml stage {stage!r} (`{spec['cmd']}`) imports these but does not depend on them: {missing}"


def test_the_train_stage_depends_on_its_identity_and_the_plan_stage_on_the_training_code():
    """A cell retrains when its identity file changes; that file changes with the training code
    (its code digest, ftlab.source), and the plan stage that writes it re-runs on every file of it."""
    train, plan = _spec("train"), _spec("plan")
    assert train["deps"] == ["${report.dir}/plan/${item.method}/s${item.seed}-n${item.size}.json"]
    assert "params" not in train  # they are in the identity, less what does not change the result
    assert all(covered(p, plan["deps"]) for p in stage_files("train"))
    assert {"task", "model", "train", "method_params", "seeds", "train_sizes"} <= set(plan["params"])


def test_the_import_analysis_sees_function_level_and_transitive_imports():
    train = stage_code("train").keys()
    assert {"ftlab.train", "ftlab.trainer", "ftlab.data", "ftlab.metrics", "ftlab.modeling", "ftlab.methods.lora"} <= train
    assert "ftlab.report" not in train and "ftlab.checks" not in train  # other stages' code is not train's
    assert {"ftlab.report", "ftlab.stats"} <= stage_code("compare").keys()
    assert "ftlab.demo" in stage_code("prepare")  # imported inside a function of ftlab.data
