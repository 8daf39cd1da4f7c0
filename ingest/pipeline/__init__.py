"""The way a drop travels: watched, claimed, read, normalized, and landed or quarantined."""
