"""The README's Python API example, run as written on a small run folder (one exported epoch, 32 px)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import yaml
from test_evaluation import flat_blobs, write_pngs

ROOT = Path(__file__).resolve().parent.parent
TINY32 = dict(
    z_dim=16,
    c_dim=0,
    w_dim=16,
    img_resolution=32,
    img_channels=3,
    mapping_kwargs=dict(num_layers=1),
    synthesis_kwargs=dict(channel_base=128, channel_max=16),
)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def small_run(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A base network, a run folder holding one exported fine-tuned network (a perturbed copy) and its config."""
    from stylegan_blend.checkpoints import save_network
    from stylegan_blend.data.prepare import prepare_images
    from stylegan_blend.networks import Generator

    torch.manual_seed(0)
    base, tuned = Generator(**TINY32), Generator(**TINY32)
    base_file = save_network(tmp_path / "base.pt", base)
    run = tmp_path / "run"
    save_network(run / "networks" / "epoch=0003.pt", tuned, meta={"epoch": 3, "kimg": 1.5})
    write_pngs(tmp_path / "raw", flat_blobs(20, 0))
    prepare_images(tmp_path / "raw", tmp_path / "data", resolution=32, val_fraction=0.0)
    config = {
        "data": {"path": str(tmp_path / "data"), "resolution": 32},
        "blend": {"base": str(base_file), "swap_res": [8]},
        "metrics": {"num_gen": 8, "batch_size": 8, "identity_num": 8},
        "paths": {"cache_dir": str(tmp_path / "cache")},
    }
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return base_file, run, {"base": base.state_dict(), "tuned": tuned.state_dict()}


def test_readme_example_runs(tmp_path, capsys):
    base_file, run, states = small_run(tmp_path)
    code = readme_example().replace('Path("outputs/demo/run")', f"Path({str(run)!r})")
    code = code.replace('"experiments/demo/base.pt"', repr(str(base_file)))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)

    # blend: b4 and b8 (and the mapping) are the base's, b16 and b32 the fine-tuned model's
    G = scope["G"].state_dict()
    for key, value in G.items():
        block = re.match(r"synthesis\.b(\d+)\.", key)
        want = "base" if block is None or int(block.group(1)) <= 8 else "tuned"
        assert torch.equal(value, states[want][key]), key
    # score_run: base, three swap points and the unblended model of epoch 3, each with a style and an identity row
    scored = {(r["swap_res"], r["metric"]) for r in scope["rows"]}
    for cell in ("base", 4, 8, 16, "none"):
        assert {(cell, "kd_randcnn"), (cell, "idloss_proxy")} <= scored, cell
    # select: the declared rule, written to selection.json and printed
    sel = scope["sel"]
    assert str(sel.rule) == "min_identity=0.7" and sel.bootstrap is not None
    record = json.loads((run / "selection.json").read_text())
    assert record["rule"] == "knee"  # score_run re-made the run's own pick; select() only reads
    assert sel.header() in capsys.readouterr().out
