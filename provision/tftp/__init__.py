"""The read-only TFTP server: a lean protocol engine (engine.py) over the file policy (files.py).
Nothing is imported here: a pump process (pump.py) loads the engine alone, not the store."""
