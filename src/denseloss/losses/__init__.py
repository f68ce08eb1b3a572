"""denseloss.losses."""
