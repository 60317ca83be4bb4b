"""humanseg.ops."""
