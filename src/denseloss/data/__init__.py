"""denseloss.data."""
