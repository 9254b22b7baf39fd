"""Phone-system sources: a source adapter turns one vendor's webhook request into events.

Adapters are plugins of their own: the entry point group ``callbridge.sources`` maps a
format name (a source's ``format`` setting) to an adapter class or factory. callbridge
ships ``callbridge`` (its own JSON format, :mod:`callbridge.sources.native`) and adapters
for public phone-system formats. See :mod:`callbridge.sources.base` for the interface.
"""
