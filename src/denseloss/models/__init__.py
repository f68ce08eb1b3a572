"""denseloss.models."""
