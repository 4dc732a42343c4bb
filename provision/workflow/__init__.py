"""Rebuild workflow: states as data, steps, batches; the only code that changes a node's state."""
