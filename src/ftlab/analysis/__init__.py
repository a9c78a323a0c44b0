"""Judging the runs: overfitting and drift checks, statistics, baselines, the comparison report."""
