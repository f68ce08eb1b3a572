"""denseloss.config."""
