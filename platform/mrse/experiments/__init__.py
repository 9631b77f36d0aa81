"""A/B experiments: arm assignment, the SQL experiment store, click-through reports."""
