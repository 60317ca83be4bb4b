"""humanseg.deploy."""
