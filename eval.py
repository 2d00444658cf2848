"""Evaluate any encoder or batchmix run on every LAReQA setting: `python eval.py [overrides]` (see conf/eval.yaml)."""

from batchmix.run.cli import eval_main

if __name__ == "__main__":
    eval_main()
