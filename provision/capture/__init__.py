"""Capturing host facts (from the engine, from the node, from a file) and comparing snapshots."""
