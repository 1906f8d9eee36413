"""What persists between runs: atomic writes and sealed checkpoints, result records and their
layout under ``results/``, per-model locks, provenance, and logging."""
