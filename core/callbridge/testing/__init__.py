"""The contract-test kit for plugin authors (see docs/writing-a-plugin.md)."""
