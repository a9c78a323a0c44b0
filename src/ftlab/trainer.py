"""The Trainer as ftlab uses it: a resumable length-grouped sampler, early stopping that restores
the best weights, and a divergence guard."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

log = logging.getLogger(__name__)


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped batches in an order that depends only on (seed, epoch).

    The stock sampler draws from the global RNG when an epoch starts, so a run resumed mid-epoch
    from a checkpoint would see other batches than the uninterrupted run; seeding per epoch makes
    the resumed run identical.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it before every epoch
        self.generator.manual_seed(self.seed + epoch)


class FtlabTrainer(Trainer):
    """A Trainer whose training order survives an interruption (see EpochSeededLengthSampler)."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        # Grouped by the global batch: under DDP every rank draws this same order and accelerate deals
        # its per-device batches out in turn (rank r takes r, r+W, ...), so each optimizer step sees
        # the examples of the single-process step, split between the ranks.
        batch = self.args.train_batch_size * self.args.world_size
        return EpochSeededLengthSampler(batch, lengths, self.args.data_seed)

    def _get_eval_sampler(self, eval_dataset):
        """Rows in order of length, so each batch pads little. The stock length grouping sorts only
        within megabatches of at most len/4 rows, so an evaluation set under 4 batches long went
        unsorted: every batch padded to its longest row, 2.4x slower on 500 SST-2 sentences."""
        lengths = [len(ids) for ids in eval_dataset["input_ids"]]
        return sorted(range(len(lengths)), key=lengths.__getitem__)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class BestState(TrainerCallback):
    """Early stopping that keeps the best trainable weights in memory and restores them at the end.

    The Trainer's own ``load_best_model_at_end`` reloads checkpoints from disk and breaks for peft
    prompt methods (peft issue 2256); holding a copy of the trainable tensors works for every
    method and costs no checkpoint writes.
    """

    def __init__(self, metric: str, higher_is_better: bool, patience: int):
        self.key = f"eval_validation_{metric}"
        self.sign = 1.0 if higher_is_better else -1.0
        self.patience = patience
        self.best: float | None = None
        self.best_step = 0
        self.bad_evals = 0
        self.state: dict[str, torch.Tensor] = {}

    @property
    def best_value(self) -> float | None:
        """The best validation value seen, in the metric's own sign."""
        return None if self.best is None else self.sign * self.best

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.key not in metrics:
            return  # the train-subset evaluation of the same step
        value = self.sign * metrics[self.key]
        if self.best is None or value > self.best:
            self.best, self.best_step, self.bad_evals = value, state.global_step, 0
            self.state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
            return
        self.bad_evals += 1
        if self.patience and self.bad_evals >= self.patience:
            log.info("early stopping at step %d (best step %d)", state.global_step, self.best_step)
            control.should_training_stop = True
            control.should_save = False  # the run ends here: see NoFinalCheckpoint

    def on_save(self, args, state, control, **kwargs):
        """Keep the best weights and the counters with each checkpoint, so a resumed run has them."""
        if not state.is_world_process_zero:  # every DDP rank holds the same; one writes
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.state:
            save_file({n: t.contiguous() for n, t in self.state.items()}, str(ckpt / "best_state.safetensors"))
        meta = {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}
        (ckpt / "best_state.json").write_text(json.dumps(meta))

    def load(self, checkpoint: str | Path) -> None:
        """Restore what :meth:`on_save` wrote into ``checkpoint``."""
        meta = json.loads((Path(checkpoint) / "best_state.json").read_text())
        self.best, self.best_step, self.bad_evals = meta["best"], meta["best_step"], meta["bad_evals"]
        weights = Path(checkpoint) / "best_state.safetensors"
        self.state = load_file(str(weights)) if weights.is_file() else {}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.state:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, tensor in self.state.items():
                    params[name].copy_(tensor)


class NoFinalCheckpoint(TrainerCallback):
    """Skip the checkpoint the Trainer writes at the last step.

    The run directory is written right after training and the checkpoints are then deleted, so
    that write (model, optimizer state and RNG: about 1 s for MiniLM on CPU) bought nothing. A run
    that dies after its last step resumes from the checkpoint before.
    """

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_save = False


class FiniteLoss(TrainerCallback):
    """Stop with the step and the method as soon as the logged training loss is NaN or infinite."""

    def __init__(self, method: str):
        self.method = method

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise TrainingDiverged(
                f"{self.method}: training loss became {loss} by step {state.global_step}; "
                f"lower method_params.{self.method}.lr or check the data"
            )


def dvclive_callback(directory: Path) -> TrainerCallback:
    """Training metrics and params through DVCLive into ``directory`` (``dvc plots``, the VS Code extension).

    transformers' own callback: dvclive's ``dvclive.huggingface`` one crashes with transformers 5.
    ``save_dvc_exp=False, dvcyaml=False``: outside ``dvc exp run`` DVCLive would otherwise create
    experiments and rewrite dvc.yaml; the plots are declared in dvc.yaml instead.
    """
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    return DVCLiveCallback(live=Live(str(directory), save_dvc_exp=False, dvcyaml=False, report=None))
