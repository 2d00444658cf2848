"""Open the study's database: a bad `hydra.sweeper.storage` is one line before any trial, never a
traceback or a hang, and the storage that comes back keeps heartbeats of the running trials.

A URL is first tried with one plain connection (a short connect timeout for network databases), so
a typo, a missing driver, a refused or unreachable server or an SQLite file in a missing folder is
told apart from the harmless races of workers creating the same tables at once, which are retried.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from typing import Any, Callable, Optional

import optuna

log = logging.getLogger(__name__)

# Seconds a network database may take to accept a connection (libpq's own default is to wait forever).
CONNECT_TIMEOUT_S = 10
FIX = ("use a SQLAlchemy URL such as sqlite:///path/to/study.db or postgresql+psycopg://user@host/db "
       "(password in PGPASSWORD / ~/.pgpass), or null for <sweep dir>/optuna.db")


class StorageError(Exception):
    """`hydra.sweeper.storage` cannot be used; the message is one line naming it and the fix."""


def hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


def engine_kwargs(url: str) -> dict[str, Any]:
    """A connect timeout for PostgreSQL / MySQL unless the URL sets one (`?connect_timeout=...`)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in parsed.query:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def check_storage(url: str) -> None:
    """One connection to `url`, or a StorageError saying why not and what to do."""
    import sqlalchemy
    from sqlalchemy import exc

    shown = f"hydra.sweeper.storage={hide_password(url)}"
    try:
        engine = sqlalchemy.create_engine(url, **engine_kwargs(url))
    except exc.NoSuchModuleError as err:
        kind = str(err).rsplit(":", 1)[-1].strip()
        raise StorageError(f"{shown} names a database kind SQLAlchemy does not know ({kind!r}): {FIX}") from None
    except exc.ArgumentError:
        raise StorageError(f"{shown} is not a database URL: {FIX}") from None
    except ImportError as err:
        raise StorageError(f"{shown} needs the Python driver {getattr(err, 'name', None) or err}, which is not installed: "
                           f"install it, or name an installed driver (postgresql+psycopg://...)") from None
    try:
        with engine.connect():
            pass
    except exc.DBAPIError as err:
        why = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        if engine.url.get_backend_name() == "sqlite":
            raise StorageError(f"{shown} cannot open the SQLite file {engine.url.database!r} ({why}): create its folder "
                               f"or point at a writable path") from None
        raise StorageError(f"{shown} cannot connect ({why}): check host, port, user and database name and that the "
                           f"server runs and is reachable from here; or {FIX}") from None
    finally:
        engine.dispose()


def open_storage(url: str, heartbeat_interval: int, grace_period: Optional[int],
                 on_stale: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]) -> optuna.storages.RDBStorage:
    """The study's RDBStorage with Optuna's heartbeat on: a RUNNING trial whose heartbeat is older
    than `grace_period` seconds (default 2 x interval) counts as stale and `on_stale` is called
    after `optuna.storages.fail_stale_trials` marks it FAIL."""
    check_storage(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return retrying(lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs(url), heartbeat_interval=heartbeat_interval, grace_period=grace_period,
            heartbeat_stale_trial_callback=on_stale,
        ))


def retrying(make: Callable[[], Any], retries: int = 5) -> Any:
    """Workers starting together on a fresh database race to create Optuna's tables and the study
    row; the loser of such a race just tries again."""
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(retries):
        try:
            return make()
        except (SQLAlchemyError, optuna.exceptions.DuplicatedStudyError) as err:
            if attempt == retries - 1:
                raise
            log.info("storage busy (%s), retrying", type(err).__name__)
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")
