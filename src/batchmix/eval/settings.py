"""The evaluation settings of LAReQA retrieval: which candidates a query is ranked against.

- ``mono``  each question against the candidates of its own language (monolingual);
- ``cross`` each question against the candidates of one other language (cross-lingual);
- ``multi`` each question against the candidates of every language at once (multilingual).

Metric keys are `<metric>/<setting>`, e.g. `map/multi`. These are *not* the training batch types
(`batchmix.mixing.batch_types`), although the three built-in types share the names: a new batch type adds
no evaluation setting, so report code that reads `map/<setting>` iterates over `EVAL_SETTINGS`.
"""

from __future__ import annotations

EVAL_SETTINGS: tuple[str, ...] = ("mono", "cross", "multi")
# The split that chooses (objective, pruning, best checkpoint): its corpus key in an evaluation round
# and the prefix of its metrics (`val/map/multi`).
VAL_SPLIT = "val"
# The key, in an evaluation round, of the training-article text the training-free baselines are fitted
# on (batchmix.eval.baselines): encoded with the round, never scored.
BASELINE_FIT = "baseline_fit"
# The order the printed metrics tables list them in: the multilingual pool (LAReQA's headline) first.
HEADLINE_ORDER: tuple[str, ...] = ("multi", "mono", "cross")
SETTING_WORDS = {"mono": "monolingual", "cross": "cross-lingual", "multi": "multilingual"}
# The val-curve figures every periodic validation logs as `val/<key>` (and the only ones the best
# checkpoint and pruning can follow); val_history.csv keeps every aggregate figure.
VAL_CURVE_KEYS: tuple[str, ...] = ("map/multi", "map/mono", "map/cross", "recall@10/multi", "bias/rank_distance")
