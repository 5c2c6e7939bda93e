"""Textual terminal UI over the public API. Not implemented yet: see issue 7."""
