"""Where stages meet Ray: starting Ray (cluster), the one adapter to ``map_batches`` (adapter),
the one GPU/CPU decision per pass (placement) and running a pass to completion (executor)."""
