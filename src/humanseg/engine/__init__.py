"""humanseg.engine."""
