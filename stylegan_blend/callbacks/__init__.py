"""Lightning callbacks: network export at every checkpoint, blend-and-score, atomic checkpoint IO."""
from .export import AtomicCheckpointIO, EpochCheckpoint, NetworkExport, is_checkpoint_epoch

__all__ = ["AtomicCheckpointIO", "EpochCheckpoint", "NetworkExport", "is_checkpoint_epoch"]
