"""vitwatch."""
