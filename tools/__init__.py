"""Client commands and tools: everything of pycrid that is not the daemon."""
