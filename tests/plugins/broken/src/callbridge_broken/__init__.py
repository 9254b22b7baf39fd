"""Plugins that fail to load, each for one reason."""
