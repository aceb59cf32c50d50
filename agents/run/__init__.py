"""Running agents: the one episode loop, evaluation, the benchmark, executors, reporting,
results and datasets."""
