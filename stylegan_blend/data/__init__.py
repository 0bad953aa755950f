"""Training data: prepared folders (images, video frames, synthetic faces) and the Lightning datamodule.

`folder` is the prepared-folder layout every producer writes (`prepare`, `video`, `synthetic`) and every reader
reads (`datamodule`, the metric caches). Submodules are imported by name: the CLI does not pay for Lightning/PyAV.
"""
