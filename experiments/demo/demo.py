"""`make demo`: the whole idea offline on a 2-core CPU in a few minutes.

1. two synthetic face domains ("photo" = the real-face stand-in, "toon" = the stylised set);
2. a tiny base generator pre-trained on "photo" (committed: experiments/demo/base.pt; rebuilt with
   --fresh or `make demo-base`);
3. fine-tune on a few hundred "toon" faces with checkpoints every few epochs; at every checkpoint the
   blend callback builds base x fine-tuned blends at 4/8/16 px and scores them (randcnn proxy; also
   against "photo" with the src_ prefix);
4. a synthetic "photo" face projected into the base model and rendered with the best blend;
5. the report, and one line per epoch with the cell the selection rule (knee by default) picks over
   (style distance, identity loss), with why and how stable it is over resampled seeds (selection.json),
   next to the one-sided lowest-style pick.
Every step is a command a user could type; the demo prints them.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = ROOT / "experiments" / "demo" / "base.pt"


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"), WANDB_SILENT="true")
    if subprocess.run(cmd, env=env).returncode != 0:  # the step printed its own error line
        raise SystemExit(f"error: demo step failed: {' '.join(cmd[1:4])} ... (see the message above)")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stylegan_blend", *args]


def _train(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "stylegan_blend.app.train", *overrides]


def make_data(out: Path, photo: int, toon: int) -> tuple[Path, Path]:
    data = out / "data"
    for domain, count, val in (("photo", photo, "0.05"), ("toon", toon, "0.1")):
        if not (data / domain / "manifest.json").exists():
            _run(_cli("prepare", "synthetic", str(data / domain), "--domain", domain, "--count", str(count),
                      "--res", "32", "--val-fraction", val, "--seed", "0"))
    return data / "photo", data / "toon"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_base(out: Path, photo: Path, epochs: int, base: Path) -> Path:
    """Pre-train the base on "photo" and store its final G_ema + D in half precision (< 2 MB)."""
    run = out / "base_run"
    shutil.rmtree(run, ignore_errors=True)
    _run(_train("experiment=demo_base", f"data.path={photo}", f"trainer.max_epochs={epochs}",
                f"paths.output_dir={run}", "trainer.enable_progress_bar=false"))
    return package_base(sorted((run / "networks").glob("epoch=*.pt"))[-1], base, epochs)


def package_base(export: Path, base: Path, epochs: int) -> Path:
    """An exported G_ema + D in half precision (< 2 MB), with its SHA-256 and the command beside it."""
    from stylegan_blend.checkpoints import load_network, save_network

    net = load_network(export)
    base.parent.mkdir(parents=True, exist_ok=True)
    save_network(base, net.G_ema.half(), D=net.D.half(), meta={"source": "make demo-base", "kimg": net.meta.get("kimg"),
                                                                "epoch": net.meta.get("epoch")})
    digest = sha256(base)
    cmd = f"make demo-base  # = python experiments/demo/demo.py --build-base --base-epochs {epochs}"
    base.with_name(base.name + ".sha256").write_text(f"{digest}  {base.name}\n# made by: {cmd}\n")
    print(f"base network: {base} ({base.stat().st_size / 1e6:.2f} MB, sha256 {digest})")
    return base


def stylize_example(run: Path, photo: Path, swap_res: list[int], steps: int, base: Path) -> None:
    """Project held-out "photo" faces into the base and render them with every blend of the last epoch."""
    from stylegan_blend.data.folder import read_manifest

    epoch = sorted((run / "networks").glob("epoch=*.pt"))[-1].stem.split("=")[1]
    faces = run / "stylize_inputs"
    faces.mkdir(exist_ok=True)
    manifest = read_manifest(photo)
    for f in (sorted(manifest.files("val")) + sorted(manifest.files("train")))[:3]:  # held-out faces first
        shutil.copy(photo / f, faces / Path(f).name)
    _run(_cli("stylize", str(faces), "--base", str(base), "--run", str(run), "--epoch", epoch,
              "--swap-res", ",".join(str(r) for r in swap_res) + ",none", "--outdir", str(run / "stylized"),
              "--steps", str(steps), "--no-align"))


def print_choice(run: Path, lowest) -> None:
    """Which cell the declared rule picks and why, next to the one-sided pick (lowest style distance)."""
    from stylegan_blend.evaluation.run_selection import run_selection

    sel = run_selection(run, write=True)
    if sel is None:
        print("no identity scores: only the one-sided pick below, which always favours the most fine-tuned cell")
    else:
        print(sel.header())
        if sel.bootstrap is None:
            print(f"stability unknown: {sel.uncertainty_note}")
        for choice in sel.per_epoch:
            print(sel.line(choice))
        print(sel.line())
        print(f"why: {sel.overall.why()}")
        print(f"best by {sel.rule}: {sel.summary()}  (written to {run / 'selection.json'})")
    if lowest:
        print(f"one-sided pick (lowest {lowest[-1].metric}, identity ignored): {lowest[-1].cell} at epoch "
              f"{lowest[-1].epoch}")


def readme_figures(run: Path, dest: Path) -> list[Path]:
    """The pictures the README shows, taken from the report: the last checkpoint's labelled sheet, the
    heatmap, and the first stylised face."""
    report = run / "report"
    sheets = sorted((report / "sheets").glob("run0_epoch=*.png"))
    picks = {"demo_grid.png": sheets[-1] if sheets else None, "demo_heatmap.png": report / "fig" / "run0_heatmap.png",
             "demo_stylized.png": next(iter(sorted((run / "stylized").glob("*_stylized.png"))), None)}
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, source in picks.items():
        if source is not None and source.is_file():
            shutil.copyfile(source, dest / name)
            written.append(dest / name)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo", help="demo output folder")
    p.add_argument("--base", default=str(DEFAULT_BASE), help="base network (built here if missing)")
    p.add_argument("--fresh", action="store_true", help="rebuild the base network instead of using the committed one")
    p.add_argument("--build-base", action="store_true", help="only (re)build experiments/demo/base.pt")
    p.add_argument("--base-epochs", type=int, default=40)
    p.add_argument("--photo", type=int, default=2000, help="synthetic photo faces")
    p.add_argument("--toon", type=int, default=300, help="synthetic toon faces (the small stylised set)")
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--num-gen", type=int, default=200)
    p.add_argument("--project-steps", type=int, default=200)
    args = p.parse_args(argv)
    t0 = time.time()
    out = Path(args.out)
    photo, toon = make_data(out, args.photo, args.toon)
    base = Path(args.base)
    if args.build_base or args.fresh or not base.exists():
        build_base(out, photo, args.base_epochs, base)
        if args.build_base:
            return 0
    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)
    _run(_train("experiment=demo", f"model.init_from={base}", f"data.path={toon}", f"paths.output_dir={run}",
                f"trainer.max_epochs={args.epochs}", f"checkpoint.every_n_epochs={args.every}",
                f"metrics.num_gen={args.num_gen}", f"metrics.source_data={photo}", "trainer.enable_progress_bar=false"))
    from stylegan_blend.reporting.report import build_report
    from stylegan_blend.reporting.scores import best_cells

    best = best_cells(run / "metrics.csv")
    import yaml

    swaps = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["blend"]["swap_res"]
    stylize_example(run, photo, swaps, args.project_steps, base)
    index = build_report([run])
    figures = readme_figures(run, out / "figures")
    print(f"\nreport: {index}")
    print(f"README pictures: {', '.join(str(f) for f in figures)} (docs/ holds copies)")
    print_choice(run, best)
    print(f"demo wall time: {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
