"""`python tests/slurm_preempt.py RANK MINIBATCH <train overrides>`: stylegan-blend-train, where in the first attempt
of a SLURM job (SLURM_RESTART_COUNT unset) the process of global rank RANK gets SLURM's requeue signal (SIGUSR1) in
the middle of minibatch MINIBATCH: the preemption of the requeue tests."""
import os
import signal
import sys

from stylegan_blend.training.module import StyleGAN2Module

RANK, AT = int(sys.argv.pop(1)), int(sys.argv.pop(1))
_step = StyleGAN2Module.training_step


def preempted(self, batch, batch_idx):
    out = _step(self, batch, batch_idx)
    if self.global_rank == RANK and self.minibatch == AT + 1 and not int(os.environ.get("SLURM_RESTART_COUNT") or 0):
        os.kill(os.getpid(), signal.SIGUSR1)
    return out


StyleGAN2Module.training_step = preempted

if __name__ == "__main__":
    from stylegan_blend.app.train import main

    main()
