"""Train a multilingual dual encoder on hybrid batches: `python train.py [overrides]` (see conf/train.yaml)."""

from batchmix.run.cli import train_main

if __name__ == "__main__":
    train_main()
