"""denseloss.training."""
