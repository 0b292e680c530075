"""State models (ST and SE): data, training, evaluation, export and serving as a library."""

__version__ = "0.1.0"
