"""One blueprint per concern: recommendations, items, model and admin, health, metrics."""
