"""Examples shipped with callbridge, to read and to run.

:mod:`callbridge.examples.notebook` is a complete plugin for a small example
app, with its sandbox and its contract tests.
"""
