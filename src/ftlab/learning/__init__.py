"""What a model learns and how it is scored: the method and task registries, model building, metrics."""
