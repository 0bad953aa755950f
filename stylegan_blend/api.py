"""The notebook API: four calls over the domain packages, with no Hydra config or command line to compose."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .app.config import register_config
from .blending.config import BlendConfig
from .blending.swap import blend_generators
from .checkpoints import Network
from .checkpoints import load_network as _load_network
from .evaluation.run_scoring import score_exported
from .evaluation.run_selection import run_selection
from .networks import Generator
from .run.reader import run_config
from .selection import Selection

NetworkLike = str | Path | Network | Generator


def load_network(path: str | Path, device: str = "cpu") -> Network:
    """Any supported checkpoint (our .pt or Lightning .ckpt, NVIDIA's PyTorch or TensorFlow-era .pkl, rosinality's
    .pt; the format is read from the content) as a Network: `G_ema`, `G` and `D` when the file has them, `meta`."""
    return _load_network(path, device=device)


def _generator(net: NetworkLike, device: str) -> Generator:
    if isinstance(net, Generator):
        return net
    return (net if isinstance(net, Network) else _load_network(net, device=device)).G_ema


def blend(
    low: NetworkLike,
    high: NetworkLike,
    swap_res: int,
    width: float = BlendConfig.width,
    mapping: str = BlendConfig.mapping,
    device: str = "cpu",
) -> Generator:
    """A new Generator with `low`'s synthesis blocks up to `swap_res` px and `high`'s above them (a sigmoid ramp
    over log2(resolution) when `width` > 0), and the mapping network of `mapping` ("low" or "high"). The seed study
    keeps the real-face model low and the fine-tuned one high. Networks: files, loaded Networks or Generators."""
    return blend_generators(_generator(low, device), _generator(high, device), swap_res, width, mapping)


def score_run(
    run_dir: str | Path,
    blend: dict | None = None,
    metrics: dict | None = None,
    rescore: bool = False,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Score a finished run's exported networks as its training did, with `blend` / `metrics` settings overriding
    the run's own (e.g. `blend={"swap_res": [8, 16, 32]}`): every missing cell gets its style and identity rows in
    metrics.csv, its samples and per-seed scores, and selection.json is made again. Returns the rows added."""
    register_config()  # a saved config may use the configs' resolvers (${swap_res:...})
    cfg = run_config(run_dir, {"blend": blend, "metrics": metrics})
    added = score_exported(Path(run_dir), cfg, rescore=rescore, device=device, progress=progress)
    run_selection(run_dir, write=True)
    return added


def select(run_dir: str | Path, rule: str | dict | None = None) -> Selection | None:
    """The blend cell a declared rule picks over (style distance, identity loss), per epoch and over the run, with a
    paired bootstrap over seeds (stability, indistinguishable cells). `rule`: "knee", "min_identity=0.7",
    "weighted=0.5" or a `selection:` dict; default the run's own rule. None when the run has no identity scores."""
    return run_selection(run_dir, rule)
