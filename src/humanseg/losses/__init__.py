"""humanseg.losses."""
