"""adapters/sandbox."""
