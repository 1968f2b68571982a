"""One blueprint per area of API v1."""
