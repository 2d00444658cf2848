"""Sweeps over the batch-type ratio: simplex grids, the Optuna trial context seen by a running
job, intermediate-value pruning, the objective(s) a job returns, and a training-free dry run.

The Optuna sweeper itself is a Hydra plugin (`hydra_plugins.batchmix_optuna_sweeper`), because
Hydra only discovers sweepers in the `hydra_plugins` namespace package.
"""
