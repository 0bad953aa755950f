"""Check a training config before anything starts (logger, data loading, feature extraction).

Every problem found becomes one `error:` line, all of them at once, so a sweep of 50 jobs fails in
seconds instead of 25 s into each job, and leaves no stray W&B run or half-made run folder.
Only the config and the file system are looked at; networks are not loaded.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from ..blending.swap import DIRECTIONS, check_swap_res, swap_points
from ..data.datamodule import per_process_batch
from ..data.folder import IMAGE_EXTENSIONS, MANIFEST_NAME, read_manifest
from ..errors import UserError
from ..evaluation.extractors import EXTRACTORS, find_inception
from ..selection import selection_options
from ..training.module import minibatch_std_problem
from .tracking import LOGGER_KINDS


class ConfigErrors(UserError):
    """Several config problems; printed as one `error:` line each (str() joins them that way)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\nerror: ".join(self.problems))


def _int(cfg, key: str, minimum: int, problems: list[str], hint: str = "") -> int | None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{key}={value!r}: expected an integer >= {minimum}{hint}")
        return None
    return value


def _is_swap_point(swap_res, resolution: int) -> bool:
    try:
        check_swap_res(swap_res, resolution)
        return True
    except UserError:
        return False


def world_size(cfg) -> int:
    """The processes the trainer starts (trainer.devices × trainer.num_nodes) when the config says it plainly
    (a count, a list or "0,1" of device ids); 1 when it leaves it to Lightning ("auto", -1), which the module's own
    check then covers once the trainer knows."""
    devices, nodes = OmegaConf.select(cfg, "trainer.devices"), OmegaConf.select(cfg, "trainer.num_nodes")
    if isinstance(devices, (list, ListConfig)):
        n = len(devices)
    elif isinstance(devices, str) and devices.replace(",", "").strip().isdigit():
        n = int(devices) if "," not in devices else len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        n = devices
    else:
        return 1
    return n * (nodes if isinstance(nodes, int) and not isinstance(nodes, bool) and nodes > 0 else 1)


def _writable_dir(path: Path) -> str | None:
    """Why `path` cannot be (made into) a writable folder, or None."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder" if probe == path else f"{probe} (a parent) is a file, not a folder"
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".sgb-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        return f"{probe} is not writable ({exc.strerror or exc})"
    return None


def _data_problems(cfg, problems: list[str], warnings: list[str], check_res: bool = True) -> int | None:
    """Checks the dataset folder; returns the number of train images when the manifest says it."""
    path = OmegaConf.select(cfg, "data.path")
    if path is None:
        return None
    folder = Path(str(path))
    if not folder.is_dir():
        problems.append(f"data.path={folder}: no such dataset folder; expected a folder made by "
                        f"`stylegan-blend prepare images|video|synthetic`")
        return None
    try:
        manifest = read_manifest(folder)
    except UserError as exc:
        problems.append(str(exc))
        return None
    if manifest is None:
        if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")):
            problems.append(f"data.path={folder}: no images and no {MANIFEST_NAME}; expected a folder made by "
                            f"`stylegan-blend prepare`")
        else:
            warnings.append(f"data.path={folder}: no {MANIFEST_NAME}, so no val split; d_real_val and "
                            f"held-out diagnostics stay nan (make one with `stylegan-blend prepare images`)")
        return None
    made_at = manifest.settings.get("resolution")
    data_res = OmegaConf.select(cfg, "data.resolution")
    if check_res and made_at is not None and data_res is not None and int(made_at) != int(data_res):
        problems.append(f"data.path={folder}: images were prepared at {made_at} px but data.resolution={data_res} "
                        f"(model.resolution={OmegaConf.select(cfg, 'model.resolution')}); prepare the data with "
                        f"--res {data_res} or choose a model of {made_at} px")
    n_train = len(manifest.files("train"))
    if not manifest.files("val"):
        warnings.append(f"data.path={folder}: the val split is empty; d_real_val, r_t on held-out images and other "
                        f"val diagnostics will be nan (prepare with --val-fraction > 0)")
    return n_train


def check_training_config(cfg: DictConfig, run_dir: Path | None = None) -> list[str]:
    """Raise ConfigErrors listing every problem; return warning lines. `run_dir`: where the run will write."""
    problems: list[str] = []
    warnings: list[str] = []
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigErrors([f"missing config value(s): {', '.join(missing)}; set them on the command line "
                            f"(e.g. {missing[0]}=...) or choose an experiment=..."])
    try:
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except Exception as exc:  # noqa: BLE001 - an unresolvable interpolation is a config problem
        raise ConfigErrors([f"config cannot be resolved: {exc}"]) from None

    if cfg.get("selection") is not None:  # a bad rule fails now, not after training
        try:
            selection_options(OmegaConf.to_container(cfg.selection, resolve=True))
        except UserError as e:
            problems.append(str(e))
    _int(cfg, "trainer.max_epochs", 1, problems)
    _int(cfg, "checkpoint.every_n_epochs", 1, problems, " (checkpoint and score every K epochs)")
    batch = _int(cfg, "train.batch_size", 1, problems)
    if cfg.logger.kind not in LOGGER_KINDS:
        problems.append(f"logger.kind={cfg.logger.kind!r}: expected {', '.join(LOGGER_KINDS)}")

    res = OmegaConf.select(cfg, "model.resolution")
    if isinstance(res, bool) or not isinstance(res, int) or res < 4 or res & (res - 1):
        problems.append(f"model.resolution={res!r}: expected a power of two >= 4")
        res = None
    data_res = OmegaConf.select(cfg, "data.resolution")
    res_mismatch = res is not None and data_res is not None and data_res != res
    if res_mismatch:
        problems.append(f"data.resolution={data_res} but model.resolution={res} (the model generates {res} px); "
                        f"use data prepared at {res} px or another model")

    init_from = OmegaConf.select(cfg, "model.init_from")
    if init_from and not Path(str(init_from)).is_file():
        problems.append(f"model.init_from={init_from}: no such file; expected a network file to fine-tune from")

    n_train = _data_problems(cfg, problems, warnings, check_res=not res_mismatch)

    group = OmegaConf.select(cfg, "train.mbstd_group_size")
    if group is None:
        group = OmegaConf.select(cfg, "model.D_kwargs.epilogue_kwargs.mbstd_group_size")
    world = world_size(cfg)
    if batch:
        try:
            per_process_batch(batch, world)
            if problem := minibatch_std_problem(batch, world, n_train, group):
                problems.append(problem)
        except UserError as e:
            problems.append(str(e))

    blend = cfg.get("blend") or {}
    if cfg.callbacks.get("blend_eval") and blend.get("base"):
        base = str(blend["base"])
        if not Path(base).is_file():
            problems.append(f"blend.base={base}: no such file; expected the base network to blend with")
        if res is not None:
            bad = [r for r in (blend.get("swap_res") or []) if not _is_swap_point(r, res)]
            if bad:
                problems.append(f"blend.swap_res={list(blend.get('swap_res'))}: {', '.join(map(str, bad))} not a swap "
                                f"point of a {res} px model; expected some of {', '.join(map(str, swap_points(res)))} "
                                f"(or a relative grid, e.g. blend.swap_res='${{swap_res:${{model.resolution}},3,4}}')")
        for d in blend.get("directions") or []:
            if d not in DIRECTIONS:
                problems.append(f"blend.directions: {d!r}; expected {' or '.join(DIRECTIONS)}")
        _metrics_problems(cfg, problems)

    if run_dir is not None and (why := _writable_dir(Path(run_dir))):
        problems.append(f"paths.output_dir={run_dir}: {why}; expected a folder the run can write")

    t = cfg.get("train") or {}
    if init_from and not t.get("freeze_noise"):
        g = OmegaConf.select(cfg, "model.G_kwargs.synthesis_kwargs.channel_max")
        small = (g is not None and g <= 128) or (g is None and res is not None and res <= 64)
        if small:
            warnings.append("fine-tuning a small network with train.freeze_noise=false: small generators tend to "
                            "turn up the noise inputs into speckle; consider train.freeze_noise=true")
    if problems:
        raise ConfigErrors(problems)
    return warnings


def _metrics_problems(cfg, problems: list[str]) -> None:
    m = cfg.get("metrics") or {}
    name = m.get("extractor")
    if name not in EXTRACTORS:
        problems.append(f"metrics.extractor={name!r}: expected one of {', '.join(EXTRACTORS)}")
    elif name == "inception":
        try:
            find_inception(m.get("inception_path"))
        except UserError:
            where = m.get("inception_path")
            problems.append("metrics.extractor=inception: clean-fid's Inception weights "
                            + (f"{where} not found" if where else "not found")
                            + "; set metrics.inception_path=FILE (inception-2015-12-05.pt) or use metrics=proxy "
                              "for the offline proxy")


_passed: set[str] = set()  # run folders already checked in this process (Hydra's RunStart, then train())


def preflight(cfg: DictConfig, run_dir: Path | None = None) -> None:
    """check_training_config, printing the warnings as `warning:` lines on stderr (once per run folder)."""
    key = str(Path(run_dir).resolve()) if run_dir is not None else None
    if key is not None and key in _passed:
        return
    for w in check_training_config(cfg, run_dir):
        print(f"warning: {w}", file=sys.stderr)
    if key is not None:
        _passed.add(key)
