"""denseloss: losses beyond pixel-wise cross-entropy for dense prediction."""

__version__ = "0.1.0"
