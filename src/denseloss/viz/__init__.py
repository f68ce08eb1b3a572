"""denseloss.viz."""
