"""The closed-matter sync (SPEC §5): closed matters read from a source app, each
client sent once to a destination plugin, under the firm's triggers.

* :mod:`.triggers`: the opt-out and opt-in checkboxes, the configuration check;
* :mod:`.store`: the position, the start and each send, kept in the ledger.
"""
