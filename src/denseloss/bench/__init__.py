"""denseloss.bench."""
