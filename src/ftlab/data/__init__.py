"""Data in: file readers, label hygiene, splitting, prepare, Great Expectations validation, demo data."""
