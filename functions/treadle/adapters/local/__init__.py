"""Local adapters: clock, ids, code store, Git object store (a directory), scheduler."""
