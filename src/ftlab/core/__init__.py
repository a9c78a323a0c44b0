"""The ground floor: typed configuration, params files, run records, atomic writes, code hashing."""
