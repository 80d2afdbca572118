"""Training: the loop (trainer.py), its checkpoints (checkpointing.py), optimiser and schedule (optim.py), the
resumable sampler (sampler.py) and the learning-curve plot (learning_curve.py)."""
