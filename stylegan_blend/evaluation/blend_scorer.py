"""Score one checkpoint's blend cells: the work shared by the blend callback (training) and post-hoc scoring.

A cell is (epoch, swap_res, direction); `none` is the unblended fine-tuned G_ema and `base` the base
model (scored once). Rows go to metrics.csv, fixed-seed sample strips to samples/blends/epoch=NNNN/<cell>.png,
per-seed scores (for the bootstrap behind every pick) to scores/epoch=NNNN/<cell>.npz. Style is scored against
the data's held-out val split when it has at least `style_min_val` images (else the training split, said in
scores/style_reference.json and the report); then the fine-tuned model is also scored against the training split
(`train_` rows), and the gap is a memorisation signal beside D's. A scorer loads the base network and the
reference features only when it scores a cell that needs them (under DDP each rank scores a share of the cells).
"""
from __future__ import annotations

import contextlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..blending.config import BlendConfig
from ..blending.swap import blend_generators, check_mapping, check_swap_res, check_width, direction_pair
from ..checkpoints import load_network
from ..errors import UserError
from ..networks.sampling import generate_images
from ..run.files import atomic_write, file_sha256, write_text_atomic
from ..run.layout import METRICS_FILE, STYLE_REFERENCE_FILE, blend_sample_path, cell_name
from ..run.tables import append_metrics_rows, cell_key
from . import per_seed
from .config import MetricsConfig
from .extractors import make_extractor
from .identity import make_identity
from .reference import reference_features
from .scoring import evaluate_cell, identity_features, score


@contextlib.contextmanager
def isolated_rng():
    """Run a block without consuming or changing torch / numpy / python global RNG state."""
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


@dataclass
class BlendScorer:
    """Everything needed to score one checkpoint's cells; shared by the callback and post-hoc eval. The settings'
    defaults are the `blend:` and `metrics:` groups' (BlendConfig, MetricsConfig)."""
    run_dir: Path
    base_path: str
    data_dir: str
    resolution: int
    swap_res: list[int]
    directions: list[str] = field(default_factory=lambda: BlendConfig().directions)
    width: float = BlendConfig.width
    mapping: str = BlendConfig.mapping
    extractor_name: str = MetricsConfig.extractor
    num_gen: int = MetricsConfig.num_gen
    batch_size: int = MetricsConfig.batch_size
    inception_path: str | None = MetricsConfig.inception_path
    source_data: str | None = MetricsConfig.source_data
    cache_dir: str | None = None
    sample_seeds: list[int] = field(default_factory=lambda: BlendConfig().sample_seeds)
    device: str = "cpu"
    identity_name: str | None = MetricsConfig.identity  # identity extractor (evaluation/identity.py); None: style only
    identity_weights: str | None = MetricsConfig.identity_weights
    num_identity: int = MetricsConfig.identity_num  # seeds 0..n-1 of each cell paired with the base model's
    style_min_val: int = MetricsConfig.style_min_val  # style against the val split when it has this many images

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self._ready = False
        self.base = None

    @classmethod
    def from_config(cls, cfg: dict, run_dir: Path, device="cpu") -> BlendScorer:
        """From a resolved run config: its `blend:`, `metrics:`, data.path / data.resolution, paths.cache_dir."""
        b, m = BlendConfig(**cfg["blend"]), MetricsConfig(**cfg["metrics"])
        return cls(run_dir=run_dir, base_path=b.base, data_dir=cfg["data"]["path"],
                   resolution=int(cfg["data"]["resolution"]), swap_res=[int(r) for r in b.swap_res],
                   directions=list(b.directions), width=float(b.width), mapping=b.mapping,
                   extractor_name=m.extractor, num_gen=int(m.num_gen), batch_size=int(m.batch_size),
                   inception_path=m.inception_path, source_data=m.source_data,
                   cache_dir=(cfg.get("paths") or {}).get("cache_dir"), sample_seeds=list(b.sample_seeds),
                   device=str(device), identity_name=m.identity, identity_weights=m.identity_weights,
                   num_identity=int(m.identity_num), style_min_val=int(m.style_min_val))

    # -------------------------------------------------------------- setup
    def prepare(self, device=None, base: bool = True, features: bool = True) -> None:
        """Load the base model (validating the grid) and/or the extractor and the (cached) reference features."""
        if device is not None:
            self.device = str(device)
        if base and self.base is None:
            if not self.base_path:
                raise UserError("blend.base is not set: point it at the base (real-face) network to blend with")
            self.base = load_network(self.base_path, device=self.device).G_ema.eval()
            for r in self.swap_res:
                check_swap_res(r, self.base.img_resolution)
            check_width(self.width)
            check_mapping(self.mapping)
        if not features or self._ready:
            return
        self.extractor = make_extractor(self.extractor_name, device=self.device, inception_path=self.inception_path)
        self.ref_split, self.ref_why = per_seed.style_reference_split(self.data_dir, self.style_min_val)
        self.ref = reference_features(self.extractor, self.data_dir, self.resolution, cache_dir=self.cache_dir,
                                      split=self.ref_split)
        self.style_reference = per_seed.StyleReference(self.ref, self.extractor.name, self.ref_split)
        self.train_ref = None  # the memorisation check: the fine-tuned model against the images it trained on
        if self.ref_split == "val":
            self.train_ref = reference_features(self.extractor, self.data_dir, self.resolution,
                                                cache_dir=self.cache_dir, split="train")
        self.src_ref = None
        if self.source_data:
            self.src_ref = reference_features(self.extractor, self.source_data, self.resolution,
                                              cache_dir=self.cache_dir, split="all")
        self.identity = None
        if self.identity_name:
            self.identity = make_identity(self.identity_name, device=self.device, weights=self.identity_weights,
                                          resolution=self.resolution)
        self._base_identity = None
        self._ready = True

    # -------------------------------------------------------------- scoring
    def cells(self, include_base: bool):
        """(swap_res, direction) pairs in report order."""
        out = [("base", "")] if include_base else []
        out += [(r, d) for d in self.directions for r in self.swap_res]
        return out + [("none", "")]

    def generator_for(self, tuned, swap_res, direction):
        if swap_res == "base":
            return self.base
        if swap_res == "none":
            return tuned
        low, high = direction_pair(self.base, tuned, direction)
        return blend_generators(low, high, int(swap_res), width=self.width, mapping=self.mapping)

    def pending_cells(self, skip: set | None = None) -> list:
        """The cells of one checkpoint not in `skip` ({(swap_res_str, direction)}), in report order."""
        skip = skip or set()
        return [c for c in self.cells(("base", "") not in skip) if (str(c[0]), c[1]) not in skip]

    @torch.no_grad()
    def score_checkpoint(self, tuned, epoch: int, kimg: float, skip: set | None = None,
                         network_file: Path | None = None, replace: bool = False) -> list[dict]:
        """Score every cell of one checkpoint not in `skip` ({(swap_res_str, direction)}); write samples and
        the metrics.csv rows.

        Rows carry the SHA-256 of `network_file` (the file `tuned` came from) and, for the base cell, of the
        base network. `replace`: the new rows supersede rows of the same cell, metric and extractor, in one
        atomic rewrite once all of them exist (nothing is dropped before)."""
        rows = self.score_cells(tuned, epoch, kimg, self.pending_cells(skip), network_file=network_file)
        keys = {cell_key(r) for r in rows}
        append_metrics_rows(self.run_dir / METRICS_FILE, rows, replace=(lambda r: cell_key(r) in keys)
                            if replace else None)
        return rows

    @torch.no_grad()
    def score_cells(self, tuned, epoch: int, kimg: float, cells: list,
                    network_file: Path | None = None) -> list[dict]:
        """metrics.csv rows of the given cells (samples written, nothing appended); loads only what they need
        (the base model is needed by blends, the base cell and the paired identity scores)."""
        if not cells:
            return []
        self.prepare(base=bool(self.identity_name) or any(swap_res != "none" for swap_res, _ in cells))
        hashes = {"tuned": file_sha256(network_file) if network_file and Path(network_file).is_file() else ""}
        num_identity = min(self.num_identity, self.num_gen)
        if self.identity is not None and self._base_identity is None:
            self._base_identity = identity_features(self.base, self.identity, num_identity, self.batch_size,
                                                    self.device)
        self.style_reference.write(self.run_dir)
        self.write_reference_note()
        rows = []
        for swap_res, direction in cells:
            G = self.generator_for(tuned, swap_res, direction)
            keep = {}
            scores, ident = evaluate_cell(G, self.ref, self.extractor, self.num_gen, batch_size=self.batch_size,
                                          device=self.device, source_ref_features=self.src_ref,
                                          identity=self.identity, base_identity=self._base_identity,
                                          num_identity=num_identity, keep=keep)
            if swap_res == "none" and self.train_ref is not None:
                scores.update(score(keep["style_features"], self.train_ref, self.extractor, prefix="train_"))
            self.save_samples(G, epoch, cell_name(swap_res, direction))
            if swap_res == "base" and "base" not in hashes:
                hashes["base"] = file_sha256(self.base_path)
            sha = hashes["base"] if swap_res == "base" else hashes["tuned"]
            per_seed.write_cell(self.run_dir, epoch, cell_name(swap_res, direction), keep["style_features"],
                                self.style_reference, keep.get("identity"),
                                {k: v for k, (v, _) in ident.items() if k.startswith("idbase_")}, sha,
                                self.identity.name if self.identity is not None else None)
            cell = dict(epoch=epoch, kimg=f"{kimg:.3f}", swap_res=swap_res, direction=direction)
            for metric, value in scores.items():
                n_ref = len(self.src_ref) if metric.startswith("src_") else len(
                    self.train_ref if metric.startswith("train_") else self.ref)
                rows.append(dict(cell, metric=metric, value=f"{value:.6g}", n_gen=self.num_gen, n_ref=n_ref,
                                 extractor=self.extractor.name, network_sha256=sha))
            for metric, (value, n) in ident.items():  # paired: n cell images against the same n base seeds
                rows.append(dict(cell, metric=metric, value=f"{value:.6g}", n_gen=n, n_ref=n,
                                 extractor=self.identity.name, network_sha256=sha))
        return rows

    def write_reference_note(self) -> Path:
        """scores/style_reference.json: which split style is scored against, and why (the report says so)."""
        note = {"split": self.ref_split, "why": self.ref_why, "n": len(self.ref), "extractor": self.extractor.name,
                "min_val": self.style_min_val, "train_gap": self.train_ref is not None}
        return write_text_atomic(self.run_dir / STYLE_REFERENCE_FILE, json.dumps(note, indent=1) + "\n")

    def save_samples(self, G, epoch: int, cell: str) -> Path:
        imgs = generate_images(G, self.sample_seeds, noise_mode="const", batch_size=len(self.sample_seeds),
                               device=self.device)
        strip = torch.cat(list(imgs), dim=1).cpu().numpy()  # [H, N*W, C]
        picture = Image.fromarray(strip)
        return atomic_write(blend_sample_path(self.run_dir, epoch, cell), lambda f: picture.save(f, format="PNG"))


def style_gaps(rows: list[dict]) -> dict[str, float]:
    """{blend/style_gap/<metric>: style distance of the fine-tuned model to the held-out val split minus to the
    training split}: > 0 when it is closer to the images it trained on (memorising); only when style is scored
    against val (the `train_` rows exist)."""
    none = {r["metric"]: float(r["value"]) for r in rows if str(r["swap_res"]) == "none"}
    return {f"blend/style_gap/{m}": none[m] - none[f"train_{m}"] for m in none
            if f"train_{m}" in none and (m in ("fid", "kid") or m.startswith(("fd_", "kd_")))}
