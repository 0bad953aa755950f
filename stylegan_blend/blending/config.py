"""The `blend:` settings and their defaults, stated once (Hydra's schema for the group, registered by app.config)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BlendConfig:
    """The blends built and scored at every checkpoint: the base (real-face) model × the current G_ema."""

    base: str | None = "${model.init_from}"  # the base network; by default the one the run fine-tunes from
    swap_res: list[int] = field(default_factory=lambda: [16, 32, 64])  # or ${swap_res:${model.resolution},3,4}
    directions: list[str] = field(default_factory=lambda: ["low_base"])  # low_tuned: the reverse ("toonify")
    width: float = 0.0  # soft-swap width in octaves; 0 = hard swap
    mapping: str = "low"  # whose mapping network and w_avg the blend keeps
    sample_seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4, 5])  # each cell's sample strip
