"""The HTTP layer: thin blueprints over the Flask-free scoring core."""
