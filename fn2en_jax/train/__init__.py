"""What every stage shares: state, parallelism, the loop and checkpoints. Nothing here knows which stage runs."""
