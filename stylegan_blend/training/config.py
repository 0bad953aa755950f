"""The `train:` and `augment:` settings and their defaults, stated once: Hydra composes these dataclasses (their
schemas are registered by app.config) and the Lightning module reads them, so neither restates a default.

Defaults are NVIDIA's StyleGAN2 objective and schedules (stylegan2-ada-pytorch, cfg paper256); kimg counts real
images shown to D.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

ADA_TARGET = 0.6  # r_t = E[sign(D(real))] the ADA controller steers to (Karras et al. 2020)
ADA_INTERVAL = 4  # minibatches between two adjustments of p


@dataclass
class DiagnosticsConfig:
    """The overfitting probe measured after every epoch (training.diagnostics)."""

    num_images: int = 32  # train / val reals and fixed-z fakes D scores
    grid_size: int = 16  # fixed-z samples in samples/epoch=NNNN.png
    seed: int = 1234  # of the fixed z
    memorisation_res: int = 16  # nearest-neighbour distances are measured at this size


@dataclass
class TrainConfig:
    batch_size: int = 8  # total over all processes (NVIDIA's --batch); split over trainer.devices x num_nodes
    start_kimg: float = 0.0  # starting counter (the seed study resumed "from 10000 kimg")
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    eps: float = 1e-8
    r1_gamma: float | None = 1.0  # null = NVIDIA's heuristic 0.0002 * res^2 / batch
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing: float = 0.9
    ema_kimg: float | None = None  # null = batch * 10 / 32
    ema_rampup: float | None = None  # null = as NVIDIA: 0.05 from scratch, off when fine-tuning; 0 = off
    freeze_noise: bool = False  # keep the starting network's noise strengths (small models speckle otherwise)
    freeze_d: int = 0  # Freeze-D: first k discriminator layers (10 or 13 at 256 px)
    mbstd_group_size: int | None = None  # null = keep the model's
    compile: bool = False
    fp16_on_cpu: bool = False  # run the networks' fp16 blocks on the CPU too (tests, emulating trainer=gpu)
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row in one phase
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


@dataclass
class AugmentConfig:
    """`augment=ada` (adaptive discriminator augmentation, p steered towards r_t = target), `augment=diffaug`
    (DiffAugment on reals and fakes for D) or `augment=none`: each option sets `kind`, the rest are these."""

    kind: str = "none"  # ada | diffaug | none
    preset: str = "bgc"  # ada: NVIDIA's --augpipe (blit geom color filter noise cutout bg bgc bgcf bgcfn bgcfnc)
    target: float | None = ADA_TARGET  # ada: null = p fixed at initial_p (NVIDIA's --aug=fixed)
    interval: int = ADA_INTERVAL
    ada_kimg: float | None = None  # null = as NVIDIA: 500 from scratch, 100 when fine-tuning (model.init_from)
    initial_p: float = 0.0
    policy: str = "color,translation,cutout"  # diffaug


def train_settings(values: Mapping | None) -> dict:
    """The `train:` section with every default filled in, as the plain dict the module keeps (`tcfg`)."""
    values = dict(values or {})
    values["diagnostics"] = DiagnosticsConfig(**(values.get("diagnostics") or {}))
    return asdict(TrainConfig(**values))
