"""Reading and checking one config option, the same way everywhere: each component checks its own
options with these (before any data or model loads), so every bad value ends in one
`batchmix: error: <key>=<value> ...; <fix>` line."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from batchmix.core.errors import BatchmixError


def select(cfg: DictConfig, key: str) -> Any:
    """`cfg.<key>`, where a missing (`???`) or unresolvable value is a one-line error naming the key."""
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise BatchmixError(f"config value {key} cannot be resolved: {str(err).splitlines()[0]}") from None


def positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BatchmixError(f"{key}={value!r} must be a positive integer")
    return value


def positive_number(key: str, value: Any, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BatchmixError(f"{key}={value!r} must be a number > 0 (e.g. {example})")
    return value


def switch(key: str, value: Any) -> bool:
    """A true/false switch: a typo such as `model.compile=ture` would otherwise count as true."""
    if not isinstance(value, bool):
        raise BatchmixError(f"{key}={value!r} must be true or false")
    return value


def build(cfg: Mapping[str, Any], key: str, choices: list[str], example: str, base: type | None = None) -> Any:
    """`hydra.utils.instantiate(cfg)` for the component configured at `key` (e.g. `loss`), with every
    mistake as one line: a `_target_` that does not exist (or is not a `base`), an option the target
    does not take (listed with the ones it does), and the component's own `BatchmixError` for a bad
    value (unwrapped from Hydra's InstantiationException). `choices`: the config names to suggest,
    `example`: the one to show first (the default)."""
    options = {str(k): v for k, v in cfg.items()} if isinstance(cfg, (Mapping, DictConfig)) else {}
    target = options.pop("_target_", None)
    partial = options.pop("_partial_", False)  # the rest of the arguments come when it is called
    obj = _locate(str(target))
    if obj is None or (base is not None and not (isinstance(obj, type) and issubclass(obj, base))):
        raise BatchmixError(
            f"{key}._target_={target!r} is not a batchmix {key}; pick one with "
            f"{', '.join(f'{key}={name}' for name in choices)} (e.g. {key}={example})"
        )
    accepted, required = _options_of(obj)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise BatchmixError(f"{key} {target!r} got unknown option(s) {', '.join(unknown)}; it accepts: {', '.join(sorted(accepted)) or 'none'}")
    missing = sorted(required - set(options))
    if missing and not partial:
        raise BatchmixError(f"{key} {target!r} needs option(s) {', '.join(missing)}; give each a value, as the files in conf/{key}/ do")
    try:
        return instantiate(cfg, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, BatchmixError):
            raise err.__cause__ from None
        raise


def _locate(path: str) -> Any:
    """The object a dotted `_target_` names, or None (hydra's `get_object` would also log an error)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and module_name.startswith(err.name):
                continue  # no such module: try a shorter prefix
            raise
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _options_of(obj: Any) -> tuple[set[str], set[str]]:
    """(the keyword options a function or class takes, those without a default); for a class whose
    `__init__` passes `**kwargs` on, its bases' too (up to the first `__init__` that takes no
    `**kwargs`), wherever the class is defined."""
    if not isinstance(obj, type):
        return _named_parameters(obj)[:2]
    names: set[str] = set()
    required: set[str] = set()
    for klass in obj.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        own, needed, passes_on = _named_parameters(klass.__init__)
        required |= needed - names  # a subclass that gives a base's option a default answers it
        names |= own
        if not passes_on:
            break
    return names, required


def _named_parameters(function: Any) -> tuple[set[str], set[str], bool]:
    """(the named parameters of `function` but self, those without a default, whether it also takes `**kwargs`)."""
    params = [p for p in inspect.signature(function).parameters.values() if p.name != "self"]
    named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    needed = {p.name for p in params if p.name in named and p.default is p.empty}
    return named, needed, any(p.kind == p.VAR_KEYWORD for p in params)
