"""The entry points: the only code that knows Hydra, argparse and W&B.

`cli` (`stylegan-blend`, with one adapter per command in `commands/`), `train` (`stylegan-blend-train`) and
`evaluate` (`stylegan-blend-eval`) compose their configuration, run `preflight` on it and wire the domain objects;
`hydra_hooks` are Hydra's callbacks, `tracking` the W&B bookkeeping, `resolvers` the config's `${...}` functions.
"""
