"""denseloss.metrics."""
