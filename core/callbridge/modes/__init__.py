"""The four logging modes of SPEC §4 besides the automatic one the intake makes:
manual (:mod:`.manual`), delayed by notes taken during a call (:mod:`.notes`) and
the digest (:mod:`.digest`). docs/logging-modes.md describes them for users."""

from __future__ import annotations

from callbridge.modes.refs import ManualRefused

__all__ = ["ManualRefused"]
