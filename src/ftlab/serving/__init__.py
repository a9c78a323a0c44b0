"""A promoted model at work: export, promote, predict, monitor, the labelling queue."""
