"""Training data: prepared folders (images, video frames, synthetic faces) and the Lightning datamodule.

Names are imported lazily so that `stylegan-blend <any command>` does not pay for importing Lightning/PyAV.
"""
import importlib

_EXPORTS = {
    "StyleGANDataModule": "datamodule",
    "MANIFEST_NAME": "folder", "Manifest": "folder", "read_manifest": "folder",
    "prepare_images": "prepare",
    "prepare_video": "video",
    "render_face": "synthetic", "write_domain": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
