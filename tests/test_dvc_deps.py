"""dvc.yaml's stage deps cover the code each stage runs: every ftlab module that the stage's command
imports, directly or through other modules, function-level imports included. Editing any of them
must re-run the stage; a module missing from its deps leaves stale results marked up to date.

The imports are read from the source by ``ftlab.core.source`` (the walk that a cell's identity hashes
too), not listed here, so a new module is checked as soon as a stage imports it. The train stage
depends on its cell's identity file, which the plan stage writes: its code is covered there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ftlab.core.source import stage_code, stage_files

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
    assert {"ftlab.cli", "ftlab.stages", "ftlab.core.config"} <= modules.keys()  # the analysis found the entry points
    missing = sorted(str(p.relative_to(ROOT)) for p in stage_files(command) if not covered(p, spec["deps"]))
    assert not missing, f"dvc.yaml stage {stage!r} (`{spec['cmd']}`) imports these but does not depend on them: {missing}"


def test_the_train_stage_depends_on_its_identity_and_the_plan_stage_on_the_training_code():
    """A cell retrains when its identity file changes; that file changes with the training code
    (its code digest, ftlab.core.source), and the plan stage that writes it re-runs on every file of it."""
    train, plan, race = _spec("train"), _spec("plan"), _spec("race")
    assert train["deps"] == ["${report.dir}/plan/${item.method}/s${item.seed}-n${item.size}.json",
                             "${report.dir}/race/${item.method}/s${item.seed}-n${item.size}.json"]  # where the race stops it
    assert "params" not in train  # they are in the identity, less what does not change the result
    assert all(covered(p, plan["deps"]) and covered(p, race["deps"]) for p in stage_files("train"))
    assert {"task", "model", "train", "method_params", "seeds", "train_sizes"} <= set(plan["params"])


def test_the_import_analysis_sees_function_level_and_transitive_imports():
    train = stage_code("train").keys()
    assert {"ftlab.training.train", "ftlab.training.trainer", "ftlab.data.prepare", "ftlab.learning.metrics", "ftlab.learning.modeling", "ftlab.learning.methods.lora"} <= train
    assert "ftlab.analysis.report" not in train and "ftlab.analysis.checks" not in train  # other stages' code is not train's
    assert {"ftlab.analysis.report", "ftlab.analysis.stats"} <= stage_code("compare").keys()
    assert "ftlab.data.demo" in stage_code("prepare")  # imported inside a function of ftlab.data.prepare


def _render(text: str, cfg, cell=None) -> str:
    """A dvc.yaml path with the config's values and a cell's (DVC's ${...} interpolation)."""
    values = {"train.output_dir": cfg.train.output_dir, "report.dir": cfg.report.dir, "promote.dir": cfg.promote.dir,
              "promote.name": cfg.promote.name, "data.prepared_dir": cfg.data.prepared_dir}
    if cell is not None:
        values |= {"item.method": cell.method, "item.seed": cell.seed, "item.size": cell.train_size}
    for key, value in values.items():
        text = text.replace("${" + key + "}", str(value))
    assert "${" not in text, text
    return text


def test_the_run_layout_is_the_one_stages_py_defines():
    """Every path of a cell in dvc.yaml is the one ftlab.core.layout gives: the run directory, the plan
    file, the checks; and the matrix is the config's grid (the same three lists)."""
    from ftlab.core import layout
    from ftlab.learning.config import load_config
    from ftlab.serving import versions
    from ftlab.serving.promote import model_dir

    cfg = load_config(None, {"train_sizes": [20, "all"], "seeds": [1, 2]})
    train = _spec("train")
    assert train["matrix"] == {"method": "${methods}", "seed": "${seeds}", "size": "${train_sizes}"}
    for cell in cfg.cells():
        assert _render(train["deps"][0], cfg, cell) == str(layout.plan_file(cfg, cell))
        outs = [_render(next(iter(o)) if isinstance(o, dict) else o, cfg, cell) for o in train["outs"]]
        assert all(Path(o).parent == layout.run_dir(cfg, cell) or Path(o).parent.parent == layout.run_dir(cfg, cell)
                   for o in outs), outs
        assert layout.checks_dir(cfg, cell).is_relative_to(_render(_spec("check")["outs"][0], cfg))
    assert _render(next(iter(_spec("plan")["outs"][0])), cfg) == str(layout.plan_file(cfg, cfg.cells()[0]).parents[1])
    model, history, promotion = (_render(next(iter(o)) if isinstance(o, dict) else o, cfg) for o in _spec("promote")["outs"])
    assert (model, history, promotion) == (str(model_dir(cfg)), str(versions.history_dir(cfg)), str(versions.promotion_file(cfg)))
