"""Where the Hydra configs live (`CONF_DIR`), the resolvers they use (`${bm_complement:...}`, the
sweep's) and their schemas (config/schema.py), registered on import. The checks of the options live with the components that own them;
`batchmix.run.preflight` runs them all before any data or model loads."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from batchmix.config.schema import register as register_schemas
from batchmix.mixing.ratio import complement
from batchmix.run.sweep.simplex import register_resolvers as register_sweep_resolvers

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("bm_complement"):
        OmegaConf.register_new_resolver("bm_complement", complement)
    register_sweep_resolvers()


register_resolvers()
register_schemas()
