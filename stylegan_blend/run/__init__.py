"""The run folder: the one owner of everything a run writes and every reader relies on.

    outputs/<experiment>/<run>/
      checkpoints/            Lightning checkpoints (epoch=NNNN.ckpt, last.ckpt)
      networks/epoch=NNNN.pt  the exported G_ema (+ G, D) of each checkpoint epoch
      metrics.csv             long format, one row per (epoch, cell, metric): the scores every report is made from
      diagnostics.csv         one row per (epoch, metric): D logits, r_t, memorisation, losses
      scores/                 per-seed scores behind every pick's bootstrap, the style reference's summary
      samples/                fixed-z grids per epoch, blends/epoch=NNNN/<cell>.png strips
      selection.json          the declared rule's pick and how sure it is
      stats.jsonl, training_options.json, wandb_run_id, job.json, report/, .hydra/

- `files`: the atomic write and the SHA-256 every row records;
- `layout`: those names and paths, and `cell_name`;
- `tables`: the metrics.csv and diagnostics.csv schemas, their readers and writers;
- `reader`: `load_run`, everything the report and the selection read back;
- `lifecycle`: claiming a folder, truncating what a killed attempt wrote after the resumed epoch;
- `records`: stats.jsonl, training_options.json, job.json.

The submodules are imported by name (`from stylegan_blend.run.files import atomic_write`): this package imports
nothing itself, so a network loader that only writes files does not pay for the config reader.
"""
