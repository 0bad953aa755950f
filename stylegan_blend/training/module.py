"""Lightning module for StyleGAN2 fine-tuning with manual optimisation (NVIDIA's phase schedule).

Per minibatch: Gmain, Greg (path length, every `pl_interval`), Dmain, Dreg (R1, every
`r1_interval`), then the G_ema update and the ADA adjustment. Counters (nimg, epoch, step) are kept
here and in the checkpoint: Lightning's `global_step` counts optimizer steps, not minibatches.
"""
from __future__ import annotations

import copy
import random
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric

from ..checkpoints import load_network
from ..errors import UserError
from ..networks import Discriminator, Generator, set_fp16_mode
from . import losses
from .architecture import resolve
from .augment import ADAController, DiffAugment, make_augment_pipe
from .config import ADA_TARGET, AugmentConfig, train_settings
from .diagnostics import EpochDiagnostics
from .ema import ema_beta, update_ema
from .precision import check_precision, fp16_mode

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")

# NVIDIA's train.py: a run that starts from a pretrained network (--resume; here model.init_from) gets ADA speed
# ada_kimg 100 instead of 500 ("make ADA react faster at the beginning") and no G_ema ramp-up. The one place these
# defaults live: `null` in the config means "decide by how the run starts" (see `schedule_defaults`).
FROM_SCRATCH = {"ada_kimg": 500.0, "ema_rampup": 0.05}
FINE_TUNING = {"ada_kimg": 100.0, "ema_rampup": None}


def minibatch_std_problem(batch_size: int, world_size: int, n_train: int, group: int | None) -> str | None:
    """Why D's minibatch-stddev layer cannot take this run's batches (None when it can). `batch_size` is the total
    over the `world_size` processes, so each process's D sees batch_size / world_size images (its whole share of
    the train set when that is smaller); a batch larger than the group must be a multiple of it."""
    if not group or not n_train:
        return None
    batch = min(batch_size // world_size, n_train // world_size or n_train)
    if batch <= group or batch % group == 0:
        return None
    where = f" per process ({world_size} processes)" if world_size > 1 else ""
    return (f"batch of {batch} images{where} ({n_train} train images, train.batch_size={batch_size}) is not "
            f"divisible by the minibatch-stddev group {group}; use more images, a batch that is a multiple of "
            f"{group}, or train.mbstd_group_size=1")


def _same_setting(ours, theirs) -> bool:
    """Equal, where nested settings compare only the keys both sides name (a key added since has its default)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return all(_same_setting(ours[k], theirs[k]) for k in ours.keys() & theirs.keys())
    return ours == theirs


def check_resume_checkpoint(path: str, module: StyleGAN2Module) -> int:
    """The epoch of the checkpoint a run resumes from, checked before Lightning loads it: a corrupt, code-carrying
    or non-finite checkpoint, or one of another architecture, is refused in one line (Lightning would answer each
    with a traceback)."""
    net = load_network(path)
    for name in ("G_ema", "G", "D"):
        ours, theirs = getattr(module, name), getattr(net, name)
        if theirs is None:
            continue
        for key, value in theirs.init_kwargs.items():
            if not _same_setting(ours.init_kwargs.get(key), value):
                raise UserError(f"ckpt_path={path}: {name} was trained with {key}={value!r} but this config builds "
                                f"{key}={ours.init_kwargs.get(key)!r}; resume with the run's own model settings")
    return int(net.meta.get("epoch") or 0)


class TrainingDiverged(RuntimeError):
    """Raised after too many consecutive non-finite losses in one phase."""

    expected = True  # reported as one error line (errors.report_failure)


def schedule_defaults(train: dict, augment: AugmentConfig, fine_tuning: bool) -> tuple[float | None, float]:
    """(ema_rampup, ada_kimg) with `null` resolved as NVIDIA does for a run from scratch or a fine-tune.

    Explicit values win; `ema_rampup` 0 (or false) turns the ramp-up off (a literal 0 would make G_ema a copy of G).
    """
    auto = FINE_TUNING if fine_tuning else FROM_SCRATCH
    rampup = train["ema_rampup"]
    rampup = auto["ema_rampup"] if rampup is None else (float(rampup) or None)
    return rampup, auto["ada_kimg"] if augment.ada_kimg is None else float(augment.ada_kimg)


class StyleGAN2Module(pl.LightningModule):
    """G, D, G_ema plus the few-shot stabilisers; `cfg` is a plain dict (model/train/augment sections; a missing
    setting takes its default from training.config)."""

    def __init__(self, cfg: dict, run_dir: str | None = None):
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})  # plain container: loadable with weights_only=True
        self.automatic_optimization = False
        self.run_dir = Path(run_dir) if run_dir else None
        self.tcfg = train_settings(cfg.get("train"))
        G_kwargs, D_kwargs, loaded = resolve(cfg.get("model") or {}, freeze_d=self.tcfg["freeze_d"],
                                             mbstd_group_size=self.tcfg["mbstd_group_size"])
        self.G = Generator(**G_kwargs)
        self.D = Discriminator(**D_kwargs)
        if loaded is not None:
            src_G = loaded.G if loaded.G is not None else loaded.G_ema
            self.G.load_state_dict(src_G.state_dict())
            if loaded.D is not None:
                self.D.load_state_dict(loaded.D.state_dict())
            self.G_ema = copy.deepcopy(loaded.G_ema).eval().requires_grad_(False)
            self.init_meta = dict(loaded.meta or {})
        else:
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
            self.init_meta = {}
        self.fine_tuning = loaded is not None
        acfg = AugmentConfig(**(cfg.get("augment") or {}))
        self.ema_rampup, ada_kimg = schedule_defaults(self.tcfg, acfg, self.fine_tuning)
        self.augment, self.ada = _build_augment(acfg, ada_kimg)
        self.register_buffer("pl_mean", torch.zeros([]))
        self.nimg = float(self.tcfg["start_kimg"]) * 1000
        self.epochs_done = 0
        self.minibatch = 0
        self._nonfinite = {p: 0 for p in PHASES}
        self.mid_epoch_save = False  # set while callbacks.requeue saves after a minibatch
        self._pending_rng = None
        self.epoch_minibatch = 0  # minibatches of the current epoch (a mid-epoch checkpoint resumes after them)
        self.nonfinite_phases: set[str] = set()  # phases that went non-finite this epoch: the epoch is not saved
        self._d_trainable = [p for p in self.D.parameters() if p.requires_grad]
        self._compiled = None
        self.epoch_means = torch.nn.ModuleDict({k: MeanMetric() for k in (
            "loss_G", "loss_D", "r1_penalty", "pl_penalty", "d_real", "d_fake")})
        self.diagnostics = EpochDiagnostics(self.tcfg["diagnostics"])

    # ------------------------------------------------------------------ setup
    @property
    def kimg(self) -> float:
        return self.nimg / 1000

    @property
    def world(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    @property
    def r1_gamma(self) -> float:
        """NVIDIA's heuristic uses the total batch (train.batch_size is the total over all processes)."""
        g = self.tcfg["r1_gamma"]
        return losses.r1_gamma_heuristic(self.G.img_resolution, self.tcfg["batch_size"]) if g is None else float(g)

    def configure_optimizers(self):
        """Adam with the lazy-regularisation correction always on, as NVIDIA's loop (its Greg/Dreg phases exist
        even when pl_weight or r1_gamma is 0)."""
        t = self.tcfg
        g_lr, g_betas = losses.lazy_adam_params(t["g_lr"], t["betas"], t["pl_interval"])
        d_lr, d_betas = losses.lazy_adam_params(t["d_lr"], t["betas"], t["r1_interval"])
        # freeze_noise keeps the per-layer noise strengths of the starting network: a small G fine-tuned on
        # flat-shaded images otherwise turns them up to fake high-frequency detail (speckle)
        g_params = [p for n, p in self.G.named_parameters() if not (t["freeze_noise"] and n.endswith("noise_strength"))]
        opt_G = torch.optim.Adam(g_params, lr=g_lr, betas=g_betas, eps=t["eps"])
        opt_D = torch.optim.Adam(self._d_trainable, lr=d_lr, betas=d_betas, eps=t["eps"])
        return [opt_G, opt_D]

    def setup(self, stage: str) -> None:
        if self._trainer is not None:  # autocast: the fp16 blocks off; fp16_on_cpu: NVIDIA's fp16 on the CPU
            mode = fp16_mode(check_precision(self.trainer.precision), self.tcfg["fp16_on_cpu"])
            set_fp16_mode(self.G, mode)
            set_fp16_mode(self.D, mode)
            set_fp16_mode(self.G_ema, "off" if mode == "off" else "cuda")
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        res = getattr(dm, "resolution", None)
        if res is not None and int(res) != self.G.img_resolution:
            raise UserError(f"data.resolution={res} but the model generates {self.G.img_resolution} px; "
                            f"prepare the data at {self.G.img_resolution} px or choose another model")
        mbstd = self.D.b4.mbstd
        n_train = getattr(dm, "num_train", None)
        if mbstd is not None and n_train is not None:
            problem = minibatch_std_problem(self.tcfg["batch_size"], self.world, n_train, mbstd.group_size)
            if problem:
                raise UserError(problem)

    def on_fit_start(self) -> None:
        if self.world > 1:  # distinct z / mixing / augmentation per process, derived from the shared state
            offset = int(torch.randint(0, 2 ** 31, ()))
            torch.manual_seed(offset + self.global_rank)
            np.random.seed((offset + self.global_rank) % 2 ** 32)

    def _forward_fns(self):
        """(synthesis, D) callables; torch.compile'd when asked (not registered as submodules)."""
        if self._compiled is None:
            if self.tcfg["compile"]:
                self._compiled = (torch.compile(self.G.synthesis), torch.compile(self.D))
            else:
                self._compiled = (self.G.synthesis, self.D)
        return self._compiled

    # ------------------------------------------------------------------ networks
    def run_G(self, z: torch.Tensor, compiled: bool = True):
        synthesis = self._forward_fns()[0] if compiled else self.G.synthesis
        ws = self.G.mapping(z, None)
        if self.tcfg["style_mixing"] > 0:  # mixing regularisation (StyleGAN, sec. 3.1)
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            if float(torch.rand(())) >= self.tcfg["style_mixing"]:
                cutoff = ws.shape[1]
            ws2 = self.G.mapping(torch.randn_like(z), None, skip_w_avg_update=True)
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return synthesis(ws), ws

    def run_D(self, img: torch.Tensor, compiled: bool = True):
        if self.augment is not None:
            img = self.augment(img)
        D = self._forward_fns()[1] if compiled else self.D
        return D(img)

    def _trainable(self, G: bool, D: bool) -> None:
        self.G.requires_grad_(G)
        if self.tcfg["freeze_noise"]:
            for n, p in self.G.named_parameters():
                if n.endswith("noise_strength"):
                    p.requires_grad_(False)
        for p in self._d_trainable:
            p.requires_grad_(D)

    # ------------------------------------------------------------------ training
    def _finite_everywhere(self, loss: torch.Tensor) -> bool:
        """One decision for all processes: a rank that skipped backward alone would wait in another collective."""
        bad = (~torch.isfinite(loss.detach())).float()
        if self.world > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        return not bool(bad)

    def _step(self, phase: str, opt, loss: torch.Tensor, gain: float = 1.0) -> bool:
        opt.zero_grad(set_to_none=True)
        if not self._finite_everywhere(loss):
            self.nonfinite_phases.add(phase)
            self._nonfinite[phase] += 1
            self.log(f"nonfinite/{phase}", float(self._nonfinite[phase]), on_step=True, on_epoch=False)
            if self._nonfinite[phase] >= self.tcfg["max_nonfinite"]:
                last = getattr(self.trainer.checkpoint_callback, "last_model_path", "") or "none saved yet"
                raise TrainingDiverged(f"phase {phase}: {self._nonfinite[phase]} non-finite losses in a row "
                                       f"at kimg {self.kimg:.1f}; last good checkpoint: {last}")
            return False
        self._nonfinite[phase] = 0
        self.manual_backward(loss * gain if gain != 1 else loss)
        opt.step()
        return True

    def on_before_optimizer_step(self, optimizer) -> None:
        """As NVIDIA's training loop: an inf/NaN gradient entry (fp16 overflow) must not poison Adam."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)

    def training_step(self, batch, batch_idx):
        real = batch[0] if isinstance(batch, (list, tuple)) else batch
        t = self.tcfg
        n = real.shape[0]
        opt_G, opt_D = self.optimizers()
        z_dim = self.G.z_dim

        # Gmain: make D call fakes real.
        self._trainable(G=True, D=False)
        fake, _ = self.run_G(torch.randn(n, z_dim, device=self.device))
        loss_G = losses.g_nonsaturating(self.run_D(fake)).mean()
        self._step("Gmain", opt_G, loss_G)
        self.epoch_means["loss_G"].update(loss_G.detach())

        # Greg: lazy path-length regularisation on a shrunk batch.
        if t["pl_weight"] and self.minibatch % t["pl_interval"] == 0:
            m = max(n // t["pl_batch_shrink"], 1)
            fake, ws = self.run_G(torch.randn(m, z_dim, device=self.device), compiled=False)
            lengths = losses.path_length(fake, ws).float()
            pl_mean = self.pl_mean.lerp(lengths.mean(), t["pl_decay"])  # as NVIDIA: gradient flows through
            self.pl_mean.copy_(pl_mean.detach())
            penalty = (lengths - pl_mean).square()
            loss = (fake[:, 0, 0, 0] * 0 + penalty * t["pl_weight"]).mean()
            self._step("Greg", opt_G, loss, gain=t["pl_interval"])
            self.epoch_means["pl_penalty"].update(penalty.mean().detach())

        # Dmain: logistic loss on fakes and reals.
        self._trainable(G=False, D=True)
        with torch.no_grad():
            fake, _ = self.run_G(torch.randn(n, z_dim, device=self.device))
        fake_logits = self.run_D(fake)
        real_logits = self.run_D(real)
        loss_D = losses.d_logistic(real_logits, fake_logits).mean()
        self._step("Dmain", opt_D, loss_D)
        self.epoch_means["loss_D"].update(loss_D.detach())
        self.epoch_means["d_real"].update(real_logits.detach().mean())
        self.epoch_means["d_fake"].update(fake_logits.detach().mean())
        self.ada.accumulate(real_logits.detach())

        # Dreg: lazy R1 on reals.
        if self.r1_gamma and self.minibatch % t["r1_interval"] == 0:
            real_tmp = real.detach().requires_grad_(True)
            logits = self.run_D(real_tmp, compiled=False)
            self.ada.accumulate(logits.detach())  # NVIDIA's r_t counts these signs too
            penalty = losses.r1_penalty(logits, real_tmp)
            loss = (logits[:, 0] * 0 + penalty * (self.r1_gamma / 2)).mean()
            self._step("Dreg", opt_D, loss, gain=t["r1_interval"])
            self.epoch_means["r1_penalty"].update(penalty.mean().detach())
        self._trainable(G=True, D=True)

        # G_ema (beta from the images seen before this minibatch, as NVIDIA), counters, ADA.
        batch = n * self.world
        ema_kimg = t["ema_kimg"] if t["ema_kimg"] is not None else batch * 10 / 32
        update_ema(self.G_ema, self.G, ema_beta(batch, ema_kimg, self.nimg, self.ema_rampup))
        self.nimg += batch
        self.minibatch += 1
        self.epoch_minibatch += 1
        self.ada.step(self.augment, batch)

        self.log_dict({"kimg": self.kimg, "loss_G": loss_G.detach(), "loss_D": loss_D.detach()},
                      prog_bar=True, on_step=True, on_epoch=False)
        self.log_dict({"r_t": float(self.ada.r_t), "p": float(self.augment.p) if _has_p(self.augment) else 0.0},
                      prog_bar=True, on_step=True, on_epoch=False)

    def on_train_epoch_start(self) -> None:
        self.nonfinite_phases = set()
        sampler = getattr(getattr(self.trainer, "datamodule", None), "sampler", None)
        if hasattr(sampler, "set_epoch"):  # the batches of epoch k are a function of (seed, k), also under DDP
            sampler.set_epoch(self.current_epoch)
        self.epoch_minibatch = 0

    def on_train_epoch_end(self) -> None:
        self.epochs_done = self.current_epoch + 1
        row = {k: float(m.compute()) if m.update_count else float("nan") for k, m in self.epoch_means.items()}
        for m in self.epoch_means.values():
            m.reset()
        row["r_t"] = float(self.ada.r_t)
        row["ada_p"] = float(self.augment.p) if _has_p(self.augment) else 0.0
        row.update(self.diagnostics.measure(self))
        self.log_dict({f"diag/{k}": v for k, v in row.items()}, on_step=False, on_epoch=True)
        self.log("epochs_done", float(self.epochs_done), on_step=False, on_epoch=True)  # checkpoint names
        if self.run_dir is not None and self.global_rank == 0:
            self.diagnostics.write(self.run_dir, self.epochs_done, self.kimg, row, self)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["stylegan_blend"] = {
            "G_kwargs": copy.deepcopy(self.G.init_kwargs), "D_kwargs": copy.deepcopy(self.D.init_kwargs),
            "kimg": self.kimg, "nimg": self.nimg, "epoch": self.current_epoch + 1, "minibatch": self.minibatch,
            "ada": self.ada.state_dict(), "nonfinite": dict(self._nonfinite), "rng": _rng_state(),
            "rng_mid_epoch": bool(self.mid_epoch_save), "epoch_minibatch": self.epoch_minibatch,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("stylegan_blend")
        if not state:
            return
        self.nimg = float(state["nimg"])
        self.epochs_done = int(state["epoch"])
        self.minibatch = int(state["minibatch"])
        self.ada.load_state_dict(state["ada"])
        self._nonfinite.update(state.get("nonfinite", {}))
        if state.get("rng_mid_epoch"):  # saved after a minibatch: the next minibatch continues from its RNG state
            self._pending_rng = state["rng"]  # (Lightning draws the loader's seed in between) and its data
            self.epoch_minibatch = int(state["epoch_minibatch"])
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            if hasattr(dm, "resume_at"):
                dm.resume_at(self.epochs_done - 1, self.epoch_minibatch)
        else:
            _set_rng_state(state["rng"])

    def on_train_batch_start(self, batch, batch_idx) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None


def _has_p(augment) -> bool:
    return augment is not None and hasattr(augment, "p")


def _build_augment(acfg: AugmentConfig, ada_kimg: float):
    """(augment module or None, ADA controller). The controller always measures r_t; it moves p only for ADA
    (`target` null is NVIDIA's --aug=fixed: p stays at initial_p, r_t is still measured)."""
    target = ADA_TARGET if acfg.target is None else acfg.target
    if acfg.kind == "ada":
        pipe = make_augment_pipe(acfg.preset)
        pipe.p.fill_(float(acfg.initial_p))
        return pipe, ADAController(target, acfg.interval, ada_kimg=None if acfg.target is None else ada_kimg)
    ctrl = ADAController(target, acfg.interval)
    if acfg.kind == "diffaug":
        return DiffAugment(policy=acfg.policy), ctrl
    if acfg.kind == "none":
        return None, ctrl
    raise UserError(f"augment.kind={acfg.kind!r}; expected ada, diffaug or none")


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": _plain(random.getstate()),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuple(state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    saved, have = state.get("cuda") or [], torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i in range(min(len(saved), have)):
        torch.cuda.set_rng_state(saved[i], i)
    if len(saved) != have:
        from pytorch_lightning.utilities import rank_zero_warn

        rank_zero_warn(f"resume: the checkpoint has RNG states for {len(saved)} CUDA device(s), this run has "
                       f"{have}; restored {min(len(saved), have)} (the run continues, not bit-identical)")


def _plain(x):
    return [_plain(v) for v in x] if isinstance(x, tuple) else x


def _tuple(x):
    return tuple(_tuple(v) for v in x) if isinstance(x, list) else x
