"""Lightning callbacks: network export at every checkpoint, blend-and-score, atomic checkpoint IO."""
from .export import AtomicCheckpointIO, NetworkExport, is_checkpoint_epoch

__all__ = ["AtomicCheckpointIO", "NetworkExport", "is_checkpoint_epoch"]
