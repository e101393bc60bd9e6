"""Training stage: a validated, normalized, split corpus in; a checkpointed, registered model version out.

``driver.run_training`` prepares the data, opens the MLflow run and starts a Ray Train ``TorchTrainer``;
``worker.train_loop_per_worker`` runs on every worker (DDP). Beside them: ``input`` (a worker's shard as
batches), ``checkpoint`` (what a checkpoint holds), ``optim`` (precision, LR schedule, early stopping) and
``faults`` (injected failures for recovery tests).
"""
