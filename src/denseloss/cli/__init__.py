"""Command-line interface: ``denseloss train|eval|reproduce|bench|data|list``."""
