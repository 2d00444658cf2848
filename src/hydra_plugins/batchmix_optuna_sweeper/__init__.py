"""batchmix's Hydra sweeper on Optuna's ask/tell API (`hydra/sweeper: batchmix_optuna`).

Same config keys as hydra-optuna-sweeper (sampler, direction, n_trials, n_jobs, storage,
study_name, params with interval()/choice()/range()), on current Optuna, plus a `simplex(...)`
parameter type for mixing ratios. This package is imported by Hydra's plugin scan on every start,
so only the light modules live here; Optuna is imported when a sweep actually runs (`_impl`).
"""
