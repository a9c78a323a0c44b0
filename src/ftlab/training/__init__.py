"""Training one cell: the Trainer loop, hyperparameter search, the cell's identity, thread sizing."""
