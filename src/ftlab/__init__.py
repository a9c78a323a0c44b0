"""ftlab: fine-tune a transformer with several methods side by side and measure which to pick."""

__version__ = "0.1.0"
