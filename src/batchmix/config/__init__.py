"""Where the Hydra configs live (`CONF_DIR`) and their schemas (config/schema.py), registered on
import; the resolvers they use are registered by the run layer (batchmix/run/__init__.py). The
checks of the options live with the components that own them; `batchmix.run.preflight` runs them
all before any data or model loads."""

from __future__ import annotations

from pathlib import Path

from batchmix.config.schema import register as register_schemas

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"

register_schemas()
