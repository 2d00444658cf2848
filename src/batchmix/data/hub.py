"""`data.source=hub`: fetch LAReQA JSON from google-research-datasets/lareqa through `datasets`.

For users with network and no local copy. The raw files go through `datasets.load_dataset("json",
field="data")` (download, caching and offline mode are its job) and then through the very same
conversion as local files (`language_set_from_squad`), so both sources give identical corpora.
"""

from __future__ import annotations

import contextlib
import importlib

from batchmix.data.corpus import LAReQACorpus
from batchmix.data.lareqa import corpus_from_language_sets, language_set_from_squad
from batchmix.core.errors import BatchmixError

REPOSITORY = "google-research-datasets/lareqa"

# dataset name -> (folder in the repository, languages published there)
HUB_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xquad-r": ("xquad-r", ("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh")),
    "mlqa-r": ("mlqa-dev-r", ("ar", "de", "en", "es", "hi", "vi", "zh")),
}


def hub_url(dataset: str, lang: str, revision: str = "master") -> str:
    folder, _ = HUB_DATASETS[dataset]
    return f"https://raw.githubusercontent.com/{REPOSITORY}/{revision}/{folder}/{lang}.json"


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "could not fetch" (ConnectionError, TimeoutError and requests' are
    OSErrors already; httpx's and aiohttp's, when installed, are not)."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx", "HTTPError"), ("aiohttp", "ClientError")):
        with contextlib.suppress(ImportError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def load_lareqa_hub(
    dataset: str = "xquad-r",
    languages: list[str] | None = None,
    revision: str = "master",
) -> LAReQACorpus:
    """Load `dataset` (xquad-r or mlqa-r) for `languages` (None: all) from the LAReQA repository."""
    if dataset not in HUB_DATASETS:
        raise BatchmixError(f"unknown hub dataset {dataset!r}; set data.name to one of {', '.join(HUB_DATASETS)}")
    _, published = HUB_DATASETS[dataset]
    requested = sorted(set([languages] if isinstance(languages, str) else languages or published))
    unknown = [lang for lang in requested if lang not in published]
    if unknown:
        raise BatchmixError(f"unknown language code(s) {', '.join(unknown)} for hub dataset {dataset!r}; "
                            f"available: {', '.join(published)}")

    import datasets  # heavy; only needed for this source

    sets = {}
    for lang in requested:
        url = hub_url(dataset, lang, revision)
        try:
            loaded = datasets.load_dataset("json", data_files={lang: url}, field="data", split=lang)
        except _network_errors() as e:
            raise BatchmixError(f"the hub is unreachable ({url}: {type(e).__name__}); without network use "
                                f"data.source=local data.root=/path/to/{dataset}") from None
        except datasets.exceptions.DatasetGenerationError as e:
            raise BatchmixError(f"{url} could not be read as LAReQA JSON ({e.__cause__ or e}); check revision={revision!r} "
                                f"or use data.source=local data.root=/path/to/{dataset}") from None
        sets[lang] = language_set_from_squad(loaded.to_list(), lang, source=url)
    return corpus_from_language_sets(dataset, sets)
