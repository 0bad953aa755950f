"""Per-seed scores of every scored cell, kept beside metrics.csv so that every pick can carry a bootstrap over
seeds (selection/uncertainty.py) long after the networks and the reference images are gone.

`<run>/scores/epoch=NNNN/<cell>.npz` (one per cell, written atomically by the blend callback and post-hoc eval):
  style_features [n_gen, D] float32   the generated images' style features, seeds 0 … n_gen − 1
  kid_ref_rowmean [n_gen]             each one's mean kernel value against the style reference (fixed)
  identity/<metric> [n_id]            per-seed identity losses, cell(z) vs base(z), seeds 0 … n_id − 1
  idbase/<metric>                     the "another person" baseline, when the identity extractor reports one
  meta                                JSON: epoch, cell, network_sha256, style and identity extractor, reference
`<run>/scores/reference_<extractor>.npz`: the style reference's mean, covariance (for FD), KID's within-set
term, size, split and fingerprint (a cell whose fingerprint differs was scored against another reference).
A few hundred kB per cell with the proxy extractor (~380-D), ~8 MB per 1000 images with Inception (2048-D).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np

from ..data.folder import read_manifest
from ..errors import UserError
from ..run.files import write_bytes_atomic
from ..run.layout import cell_scores_path, reference_scores_path
from .distances import feature_stats, frechet_resampled, kernel_moments, kid_resampled


def fingerprint(features: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(features, np.float64).tobytes()).hexdigest()[:16]


def _save(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


class StyleReference:
    """The fixed side of the style bootstrap, computed once per scorer: KID's within-set term and FD's stats."""

    def __init__(self, features: np.ndarray, extractor: str, split: str):
        self.features, self.extractor, self.split = features, extractor, split
        self.id = fingerprint(features)
        self._within = None

    def within(self) -> float:
        if self._within is None:
            _, self._within = kernel_moments(self.features[:2], self.features)
        return self._within

    def write(self, run_dir) -> Path:
        """The reference's summary, unless the run folder already holds this very reference."""
        path = reference_scores_path(run_dir, self.extractor)
        if path.is_file():
            try:
                with np.load(path) as old:
                    if str(old["id"]) == self.id:
                        return path
            except (OSError, ValueError, KeyError):
                pass
        mu, sigma = feature_stats(self.features)
        _save(path, dict(mu=mu, sigma=sigma, kid_within=self.within(), n=len(self.features), id=self.id,
                         split=self.split, extractor=self.extractor))
        return path


def write_cell(run_dir, epoch: int, cell: str, style_features: np.ndarray, reference: StyleReference,
               identity: dict | None, idbase: dict | None, network_sha256: str, identity_extractor: str | None) -> Path:
    """One cell's per-seed data (see the module docstring)."""
    rowmean, _ = kernel_moments(style_features, reference.features)
    arrays = {"style_features": np.asarray(style_features, np.float32), "kid_ref_rowmean": rowmean}
    arrays.update({f"identity/{k}": np.asarray(v, np.float64) for k, v in (identity or {}).items()})
    arrays.update({f"idbase/{k}": np.float64(v) for k, v in (idbase or {}).items()})
    meta = dict(epoch=int(epoch), cell=cell, network_sha256=network_sha256 or "", style_extractor=reference.extractor,
                identity_extractor=identity_extractor or "", reference=reference.id, reference_split=reference.split)
    arrays["meta"] = np.array(json.dumps(meta))
    path = cell_scores_path(run_dir, epoch, cell)
    _save(path, arrays)
    return path


def _style_kind(metric: str) -> str | None:
    if metric == "kid" or metric.startswith("kd_"):
        return "kernel"
    if metric == "fid" or metric.startswith("fd_"):
        return "frechet"
    return None  # src_/train_ metrics, density, coverage: not a selection axis with a bootstrap


class RunSeedData:
    """Resampled per-cell values from a run's scores/ folder, for `selection.select_rows(seeds=...)`.

    `rows`: the run's MetricRow list (the values the pick was made from); a cell file whose network hash or
    extractor differs from its rows was written for other scores and is not used."""

    def __init__(self, run_dir, rows):
        self.run_dir = Path(run_dir)
        self.rows = {}
        for r in rows:
            self.rows[(r.epoch, r.cell, r.metric)] = r  # latest wins, as in the selection
        self._cells: dict = {}
        self._refs: dict = {}

    def _cell(self, epoch: int, cell: str):
        k = (epoch, cell)
        if k not in self._cells:
            path = cell_scores_path(self.run_dir, epoch, cell)
            data = None
            if path.is_file():
                try:
                    with np.load(path) as f:
                        data = {name: f[name] for name in f.files}
                    data["meta"] = json.loads(str(data["meta"]))
                except (OSError, ValueError, KeyError, json.JSONDecodeError):
                    data = None
            self._cells[k] = data
        return self._cells[k]

    def _reference(self, extractor: str):
        if extractor not in self._refs:
            path = reference_scores_path(self.run_dir, extractor)
            try:
                with np.load(path) as f:
                    self._refs[extractor] = {name: f[name] for name in f.files}
            except (OSError, ValueError, KeyError):
                self._refs[extractor] = None
        return self._refs[extractor]

    def sizes(self, epoch: int, cell: str, identity_metric: str) -> tuple[int, int] | str:
        """(n_gen, n_id) of a cell's per-seed data, or why there is none."""
        data = self._cell(epoch, cell)
        if data is None:
            return "no per-seed scores"
        losses = self._losses(data, epoch, cell, identity_metric)
        if isinstance(losses, str):
            return losses
        return len(data["style_features"]), len(losses)

    def _losses(self, data: dict, epoch: int, cell: str, metric: str) -> np.ndarray | str:
        """Per-seed values on the identity axis: idloss_x as kept; idnorm_x = idloss_x / idbase_x (the cell's
        kept baseline, else the run's idbase_x row: the base model does not change, so neither does it)."""
        if f"identity/{metric}" in data:
            return data[f"identity/{metric}"]
        name = metric.removeprefix("idnorm_")
        if name == metric or f"identity/idloss_{name}" not in data:
            return f"no per-seed {metric}"
        base = data.get(f"idbase/idbase_{name}")
        if base is None:
            row = self.rows.get((epoch, cell, f"idbase_{name}")) or next(
                (r for (e, c, m), r in sorted(self.rows.items(), key=lambda kv: kv[0][0], reverse=True)
                 if m == f"idbase_{name}"), None)
            base = row.value if row is not None else None
        if base is None or not math.isfinite(float(base)) or float(base) <= 0:
            return f"no idbase_{name} to normalise {metric}"
        return data[f"identity/idloss_{name}"] / float(base)

    def resample(self, epoch: int, cell: str, style_metric: str, identity_metric: str,
                 counts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
        """(style [B], identity [B]) of the cell under the seed draw `counts` [B, n_gen] (identity: its first
        n_id columns), or why not."""
        data = self._cell(epoch, cell)
        if data is None:
            return "no per-seed scores"
        meta = data["meta"]
        style_row = self.rows.get((epoch, cell, style_metric))
        id_row = self.rows.get((epoch, cell, identity_metric))
        if style_row is None or id_row is None:
            return "no score rows"
        sha = getattr(style_row, "network_sha256", "")
        if sha and meta.get("network_sha256") and sha != meta["network_sha256"]:
            return "per-seed scores of another network file"
        if style_row.extractor != meta.get("style_extractor") or (
                id_row.extractor and id_row.extractor != meta.get("identity_extractor")):
            return "per-seed scores of another extractor"
        kind = _style_kind(style_metric)
        ref = self._reference(meta["style_extractor"]) if kind else None
        if ref is None or str(ref["id"]) != meta.get("reference"):
            return f"no matching style reference for {style_metric}"
        losses = self._losses(data, epoch, cell, identity_metric)
        if isinstance(losses, str):
            return losses
        feats = data["style_features"]
        if counts.shape[1] != len(feats):
            raise ValueError(f"seed counts for {counts.shape[1]} seeds, cell has {len(feats)}")
        if kind == "kernel":
            style = kid_resampled(feats, data["kid_ref_rowmean"], float(ref["kid_within"]), counts)
        else:
            style = frechet_resampled(feats, counts, ref["mu"], ref["sigma"])
        c = counts[:, :len(losses)].astype(np.float64)
        ok = np.isfinite(losses)
        with np.errstate(invalid="ignore", divide="ignore"):
            ident = (c[:, ok] @ losses[ok]) / c[:, ok].sum(axis=1)
        return style, ident


def style_reference_split(data_dir, min_val: int) -> tuple[str, str]:
    """("val" | "train", why): style is scored against the held-out split when it has at least `min_val` images
    (a generator that copies its training images then scores no better for it), else against train."""
    try:
        manifest = read_manifest(Path(data_dir))
    except UserError:
        manifest = None
    n_val = len(manifest.files("val")) if manifest is not None else 0
    if n_val >= min_val:
        return "val", f"held-out val split ({n_val} images)"
    why = "no manifest, so no val split" if manifest is None else f"the val split has {n_val} < {min_val} images"
    return "train", f"training split ({why})"
