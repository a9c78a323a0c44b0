"""Run the real ``ftlab`` CLI and record what this process trained on; used by tests/test_ddp.py.

    [torchrun --nproc_per_node 2] tests/ddp_probe.py RECORD_DIR train --method full ...

or ``record(RECORD_DIR, [train, ...])`` in the test process (the one-process run: a process of its own
paid seconds of importing torch and transformers again). It only observes: a global forward pre-hook
sees the token ids of every batch the word embedding gets in training mode (evaluations run in eval
mode) and the outermost module of the first training step (the DDP wrapper under torchrun), whose
weights are saved after the command returns. Writes RECORD_DIR/rank<RANK>.json (the batches, padding
stripped) and RECORD_DIR/rank<RANK>.safetensors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook


def record(record_dir: Path, args: list[str]) -> int:
    """``ftlab ARGS`` in this process, its batches and final weights written to ``record_dir``; the
    command's exit code (0: recorded). The hook is removed when the command returns."""
    batches: list[list[list[int]]] = []
    trained: list[nn.Module] = []

    def observe(module: nn.Module, inputs: tuple) -> None:
        if not module.training:
            return
        if not trained:
            trained.append(module)
        # the word embedding is the one with a padding index (BERT's positions and token types have none)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            batches.append([[t for t in row if t != module.padding_idx] for row in inputs[0].tolist()])  # [PAD] is never text

    record_dir.mkdir(parents=True, exist_ok=True)
    hook = register_module_forward_pre_hook(observe)
    try:
        from ftlab.cli import app

        code = app(args, standalone_mode=False)
    finally:
        hook.remove()
    if code:
        return int(code)
    model = trained[0].module if isinstance(trained[0], nn.parallel.DistributedDataParallel) else trained[0]
    rank = os.environ.get("RANK", "0")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(record_dir / f"rank{rank}.safetensors"))
    (record_dir / f"rank{rank}.json").write_text(json.dumps(batches))
    return 0


if __name__ == "__main__":
    sys.exit(record(Path(sys.argv[1]), sys.argv[2:]))
