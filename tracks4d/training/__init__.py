"""Training of the tracks-to-4D network: data, train step, checkpoints, evaluation,
per-clip fine-tuning, and the training loop (`loop.train_and_evaluate`)."""
