"""stylegan-blend: StyleGAN2 transfer learning and layer-swap blending, measured.

In a notebook (`import stylegan_blend as sb`; README "Python API"):

    sb.load_network(path)             any supported checkpoint -> Network (G_ema, G, D, meta)
    sb.blend(low, high, swap_res)     a layer-swapped Generator
    sb.score_run(run_dir)             style and identity of every blend cell of a run's exported networks
    sb.select(run_dir, rule)          the declared rule's pick with its bootstrap over seeds

The packages form layers; each imports only the ones before it, never one after (tests/test_layers.py checks this
line, and that the import graph has no cycle):

Layers: errors -> run -> networks -> checkpoints, blending, data -> selection -> evaluation -> training -> reporting -> projection -> app -> api

`api` is `api.py` with this file and `__main__.py`. The four calls load their modules on first use, so
`import stylegan_blend.<anything>` does not import the whole package.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stylegan-blend")
except PackageNotFoundError:  # a checkout on PYTHONPATH without `pip install`
    __version__ = "unknown"

__all__ = ["blend", "load_network", "score_run", "select"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(".api", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
