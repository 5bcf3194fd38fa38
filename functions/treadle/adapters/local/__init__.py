"""Local adapters: clock, ids, code store, scheduler."""
