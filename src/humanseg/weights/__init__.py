"""humanseg.weights."""
