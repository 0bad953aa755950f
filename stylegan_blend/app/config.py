"""Where the Hydra configs are, and the one call that registers what they need: the `${...}` resolvers and the
typed schemas of the groups whose defaults live in code (`<group>/base`: conf/<group>/*.yaml extend it).

`register_config()` runs when an entry point module is imported (`app.train`, `app.evaluate`): also in a submitit
or spawned worker, which imports that module to unpickle its job and then resolves the job's config.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_store import ConfigStore
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import OmegaConf

from ..blending.config import BlendConfig
from ..blending.swap import relative_swap_points
from ..evaluation.config import MetricsConfig
from ..selection.config import SelectionConfig
from ..training.config import AugmentConfig, TrainConfig
from .hydra_hooks import job_name

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # a link to ../conf in the checkout; in the wheel


def slurm_or(under_slurm, otherwise):
    """`${slurm_or:a,b}`: a inside a SLURM task (srun/sbatch, as Lightning detects it), else b."""
    return under_slurm if SLURMEnvironment.detect() else otherwise


def sweep_paths(base, items) -> str:
    """A sweep value over folders: names relative to `base` (absolute paths kept), comma-joined."""
    return ",".join(str(i) if os.path.isabs(str(i)) else f"{base}/{i}" for i in items)


RESOLVERS = {
    "swap_res": relative_swap_points,  # ${swap_res:${model.resolution},COUNT,TOP_DIVISOR}: a relative swap grid
    "slurm_or": slurm_or,
    "job_name": job_name,  # hydra.sweep.subdir: <num>_<swept key>-<value>_...
    "sweep_paths": sweep_paths,
}


# group -> the dataclass holding its settings and their defaults (conf/<group>/<option>.yaml: `defaults: [base]`)
SCHEMAS = {
    "train": TrainConfig,
    "augment": AugmentConfig,
    "blend": BlendConfig,
    "metrics": MetricsConfig,
    "selection": SelectionConfig,
}


def register_config() -> None:
    """Register every resolver the configs use and the groups' typed schemas (idempotent)."""
    for name, function in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, function, replace=True)
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group=group, name="base", node=schema)
