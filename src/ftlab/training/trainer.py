"""The Trainer as ftlab uses it: its arguments (precision, compilation, length buckets), a resumable
length-grouped sampler, early stopping that restores the best weights, and a divergence guard."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from ftlab.learning.config import Config
from ftlab.training.parallel import is_main_process, world_size

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped batches in an order that depends only on (seed, epoch).

    transformers' grouping: rows sorted by length within megabatches of up to 50 batches. Sorting
    the whole epoch instead cut the padding on 1,024 SST-2 sentences from 27% to 6% (1.19x faster
    epochs, benchmarks/results/compile.json) but made every batch one length, and the causal-LM copy
    task then learned slower (exact match 0.12 against 0.22 in tests/test_pipeline.py's budget).
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
        self.last_step = -1  # the step last judged: a resumed run evaluates its checkpoint's step again
        self.state: dict[str, torch.Tensor] = {}

    @property
    def best_value(self) -> float | None:
        """The best validation value seen, in the metric's own sign."""
        return None if self.best is None else self.sign * self.best

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not metrics or self.key not in metrics or state.global_step == self.last_step:
            return  # the train-subset evaluation of the same step, or a resumed run's first, already judged
        self.last_step = state.global_step
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
        self.last_step = int(Path(checkpoint).name.split("-")[1])
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


def dvclive_callback(directory: Path, resume: bool = False) -> TrainerCallback:
    """Training metrics and params through DVCLive into ``directory`` (``dvc plots``, the VS Code extension).

    transformers' own callback: dvclive's ``dvclive.huggingface`` one crashes with transformers 5.
    ``save_dvc_exp=False, dvcyaml=False``: outside ``dvc exp run`` DVCLive would otherwise create
    experiments and rewrite dvc.yaml; the plots are declared in dvc.yaml instead. ``resume``: the
    run goes on from a checkpoint, and its logs from where that run's stopped (DVCLive would
    otherwise delete them; a cell the race stopped, resumed with nothing left to train, had none).
    """
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    return DVCLiveCallback(live=Live(str(directory), save_dvc_exp=False, dvcyaml=False, report=None, resume=resume))


def use_bf16(precision: str) -> bool:
    """Whether train.precision means bf16 autocast on this machine (see TrainConfig.precision)."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def use_compile(setting: str) -> bool:
    """Whether train.compile means compiled steps here. auto is off for now: the measurements so far
    (a 2-core fp32 CPU, benchmarks/results/compile.json) found no speed-up to pay for the warm-up."""
    return setting == "on"


def bucket(cfg: Config) -> int | None:
    """The multiple of tokens every batch is padded to: train.pad_to_multiple_of, else 16 when
    compiled (eight static shapes up to 128 tokens, instead of a new shape at nearly every batch)."""
    return cfg.train.pad_to_multiple_of or (16 if use_compile(cfg.train.compile) else None)


def static_graphs(cfg: Config, multiple: int) -> None:
    """One compiled graph per length bucket: dynamo otherwise turns a dimension dynamic at its first
    new size (the dynamic graph gave no speed-up), and stops compiling after 8 graphs."""
    import torch._dynamo

    buckets = math.ceil(cfg.model.max_length / multiple)
    torch._dynamo.config.automatic_dynamic_shapes = False
    # train and eval batches, and a short last batch of each, per bucket
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * buckets)


def _max_steps(cfg: Config, params: Any, n_train: int) -> int:
    """train.max_steps, raised to train.min_steps when the epochs would give fewer steps."""
    if cfg.train.max_steps > 0 or cfg.train.min_steps == 0:
        return cfg.train.max_steps
    steps = math.ceil((params.epochs or cfg.train.epochs) * math.ceil(n_train / cfg.train.batch_size))
    return cfg.train.min_steps if steps < cfg.train.min_steps else -1


def training_args(cfg: Config, params: Any, output_dir: Path, checkpoints: bool, seed: int, max_steps: int):
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    # train.batch_size is the global batch: under torchrun each of the N processes takes 1/N of it,
    # so a step learns the same whatever the number of processes
    processes = world_size()
    if cfg.train.batch_size % processes:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is the global batch: it must divide "
                         f"evenly between the {processes} training processes")
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.train.batch_size // processes,
        per_device_eval_batch_size=cfg.train.eval_batch_size,
        num_train_epochs=params.epochs or cfg.train.epochs,
        max_steps=max_steps,
        learning_rate=params.lr,  # the schedule's reference; each param group keeps its own lr
        lr_scheduler_type="linear",
        warmup_steps=cfg.train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        eval_strategy="steps",
        eval_steps=cfg.train.eval_steps,
        eval_on_start=True,  # step 0: the curves start at the pretrained model, the baseline to beat
        # a log at every evaluation step, where checkpoints are saved: FiniteLoss then stops a NaN
        # loss before it can reach a checkpoint
        logging_steps=math.gcd(cfg.train.logging_steps, cfg.train.eval_steps),
        # checkpoints (model, optimizer, scheduler, RNG, BestState) for resuming an interrupted run;
        # the best weights themselves are kept in memory by BestState
        save_strategy="steps" if checkpoints else "no",
        save_steps=cfg.train.eval_steps,
        save_total_limit=1,
        report_to=[],  # TensorBoard is attached explicitly, with the run's own log dir
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="group_by_length",
        use_cpu=not cuda,
        # on a GPU: batches in pinned memory, copied while the previous step computes (a MiniLM step
        # there is bound by the host, not the GPU: benchmarks/results/mfu_gpu.json)
        dataloader_pin_memory=cuda,
        accelerator_config={"non_blocking": cuda},
        bf16=use_bf16(cfg.train.precision),
        torch_compile=use_compile(cfg.train.compile),
        # TF32 for the matmuls left in fp32 (outside autocast) on Ampere and newer; None: torch's default
        tf32=True if cuda and torch.cuda.get_device_capability()[0] >= 8 else None,
        label_names=["labels"],
        logging_nan_inf_filter=False,  # a NaN loss must reach FiniteLoss, not be averaged away
        # Our classification, regression and tagging models average the loss over their batch
        # themselves; with this on, the Trainer also multiplies it by the number of processes under
        # DDP, doubling loss and gradients on 2. A causal LM divides its summed token loss by the
        # Trainer's token count instead: off, each process divides by its own half batch's count and
        # DDP's mean of the two means weighs a token by how few its half had (off by 0.1% in the loss
        # of tests/test_ddp.py); on, both divide by the whole batch's count, times the processes.
        average_tokens_across_devices=cfg.task_type().loss_over_batch_tokens,
    )


def build_trainer(cfg: Config, method_name: str, model: nn.Module, tokenizer: Any, ds: dict, train_eval: Any,
                  labels: list[str], work: Path, seed: int, checkpoints: bool, best: BestState, groups: list[dict],
                  extra: Sequence[TrainerCallback] = (), resuming: bool = False) -> Any:
    """The FtlabTrainer of one cell: its callbacks (logs on the main process only; ``extra``: the caller's,
    such as a search trial's pruning), arguments and optimizer. ``resuming``: from a checkpoint in ``work``."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    task, params = cfg.task_type(), cfg.params_for(method_name)
    callbacks = [best, FiniteLoss(method_name), NoFinalCheckpoint(), *extra]
    if is_main_process():
        callbacks.append(TensorBoardCallback(SummaryWriter(str(work / "tensorboard"))))
        callbacks.append(dvclive_callback(work / "dvclive", resuming))
    return FtlabTrainer(
        model=model,
        args=training_args(cfg, params, work, checkpoints, seed, _max_steps(cfg, params, len(ds["train"]))),
        train_dataset=ds["train"],
        eval_dataset={"train": train_eval, "validation": ds["validation"]},
        data_collator=task.collator(tokenizer, bucket(cfg)),
        processing_class=tokenizer,
        # one array of outputs: the models here return no others (EvalPrediction allows a tuple)
        compute_metrics=lambda p: task.eval_metrics(cast(np.ndarray, p.predictions), cast(np.ndarray, p.label_ids), labels),
        preprocess_logits_for_metrics=task.reduce_logits,
        # fused: one kernel over all parameters; on CPU 2-5x faster per step than the default
        # per-tensor loop (benchmarks/results/adamw.json), and the optimizer was 17% of a step
        optimizers=(torch.optim.AdamW(groups, lr=params.lr, fused=True), None),
        callbacks=callbacks,
    )
