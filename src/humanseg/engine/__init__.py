"""Training, evaluation and prediction: `train()`, `evaluate()`, the backend-neutral `Predictor`.

`checkpoint` (atomic checkpoints, RNG state), `optim` (optimizer and lr schedule from a config),
`sampling` (resumable data order), `distributed` (torchrun / DDP), `runtime` (device, precision,
model loading).
"""
