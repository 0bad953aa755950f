"""`python tests/ddp_poison.py RANK EPOCH <train overrides>`: stylegan-blend-train with D's output bias set to
NaN before every batch from epoch index EPOCH on, on one global rank only (fault injection for the DDP test)."""
import os
import sys

import torch

from stylegan_blend.training.module import StyleGAN2Module

if "DDP_POISON" in os.environ:  # a ddp_spawn worker re-imports this file with the parent's (popped) argv
    RANK, EPOCH = map(int, os.environ["DDP_POISON"].split(","))
else:
    RANK, EPOCH = int(sys.argv.pop(1)), int(sys.argv.pop(1))
    os.environ["DDP_POISON"] = f"{RANK},{EPOCH}"
_step = StyleGAN2Module.training_step


def poisoned(self, batch, batch_idx):
    if self.global_rank == RANK and self.current_epoch >= EPOCH:
        with torch.no_grad():
            self.D.b4.out.bias.fill_(float("nan"))
    return _step(self, batch, batch_idx)


StyleGAN2Module.training_step = poisoned

if __name__ == "__main__":
    from stylegan_blend.app.train import main

    main()
