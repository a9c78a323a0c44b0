"""Finished run directories: reload a trained classifier, merge an adapter into its base model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from torch import nn

from ftlab.analysis.rundir import Run
from ftlab.core.io import atomic_dir, write_text
from ftlab.learning.config import Config, dump_config
from ftlab.learning.methods import get_method
from ftlab.learning.modeling import load_trained, save_weights


def load_run(run_dir: Path) -> tuple[Config, nn.Module, list[str]]:
    """The resolved config, the trained model of its task (eval mode) and the label names of a run."""
    run = Run(run_dir)
    method = get_method(run.record.method)
    model = load_trained(run.config.model, run.labels, run.path / "model", method.saves_adapter, run.task)
    return run.config, model, run.labels


def merge_adapter(run_dir: Path, out_dir: Path) -> Path:
    """Fold a LoRA/DoRA/IA3 adapter into the base weights and save the full classifier."""
    cfg, model, labels = load_run(run_dir)
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise ValueError(f"{run_dir}: the run saved a full model, there is no adapter to merge")
    if not hasattr(model.base_model, "merge_and_unload"):
        raise ValueError(f"{run_dir}: peft cannot merge a {model.peft_type} adapter into the weights")
    merged = model.merge_and_unload()
    with atomic_dir(Path(out_dir)) as tmp:
        save_weights(merged, tmp, saves_adapter=False)
        shutil.copytree(Path(run_dir) / "tokenizer", tmp / "tokenizer")
        (tmp / "labels.json").write_text(json.dumps(labels))
        write_text(tmp / "config.yaml", dump_config(cfg))
    return Path(out_dir)
