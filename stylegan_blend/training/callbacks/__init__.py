"""Lightning callbacks of a training run: network export, atomic checkpoints, blend-and-score, SLURM requeue."""
