"""Run the real ``ftlab`` CLI and record what this process trained on; used by tests/test_ddp.py.

    [torchrun --nproc_per_node 2] tests/ddp_probe.py RECORD_DIR train --method full ...

It only observes: a global forward pre-hook sees the token ids of every batch the word embedding
gets in training mode (evaluations run in eval mode) and the outermost module of the first training
step (the DDP wrapper under torchrun), whose weights are saved after the command returns. Writes
RECORD_DIR/rank<RANK>.json (the batches, padding stripped) and RECORD_DIR/rank<RANK>.safetensors.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook

batches: list[list[list[int]]] = []
trained: list[nn.Module] = []


def observe(module: nn.Module, args: tuple) -> None:
    if not module.training:
        return
    if not trained:
        trained.append(module)
    # the word embedding is the one with a padding index (BERT's positions and token types have none)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        batches.append([[t for t in row if t != module.padding_idx] for row in args[0].tolist()])  # [PAD] is never text


def main() -> int:
    record = Path(sys.argv[1])
    record.mkdir(parents=True, exist_ok=True)
    register_module_forward_pre_hook(observe)
    from ftlab.cli import app

    code = app(sys.argv[2:], standalone_mode=False)
    if code:
        return int(code)
    model = trained[0].module if isinstance(trained[0], nn.parallel.DistributedDataParallel) else trained[0]
    rank = os.environ.get("RANK", "0")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(record / f"rank{rank}.safetensors"))
    (record / f"rank{rank}.json").write_text(json.dumps(batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
