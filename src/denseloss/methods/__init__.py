"""denseloss.methods."""
