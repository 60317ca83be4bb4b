"""humanseg.models."""
