"""Names every layer shares and nothing defines: the built-in model and data, the split names.

A leaf module (it imports nothing of ftlab), so config, model loading, data preparation and
promotion can all name the built-ins without importing each other.
"""

BUILTIN_DEMO = "builtin:demo"  # data.source of the generated demo sentiment data
BUILTIN_MODEL = "builtin:all-MiniLM-L6-v2"  # model.name of the packaged checkpoint (no network)
SPLITS = ("train", "validation", "test")
