"""humanseg.data."""
