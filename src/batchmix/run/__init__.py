"""The entry points and recipes (train, eval, mine, warm, export, the sweeps). Importing this layer
readies everything conf/ composes with, before any entry point (or a Hydra app of your own) composes
a config: the schemas (batchmix.config registers them) and the resolvers `${bm_complement:...}`
(mixing/ratio.py) and the sweep's (run/sweep/simplex.py); config/ sits below both, so not there."""

from omegaconf import OmegaConf

import batchmix.config  # noqa: F401  registers the schemas

from batchmix.mixing.ratio import complement
from batchmix.run.sweep.simplex import register_resolvers as register_sweep_resolvers

if not OmegaConf.has_resolver("bm_complement"):
    OmegaConf.register_new_resolver("bm_complement", complement)
register_sweep_resolvers()
