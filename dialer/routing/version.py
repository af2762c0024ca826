"""The rule-set version: a content hash of the routing policy as canonical JSON.

The document holds everything a decision depends on besides the reps themselves: the ordered
rules, the fallback, ``[[owners]]``, ``[ringing]``, ``[sla]`` and ``[compliance]``. Two configs
with the same policy give the same version whatever their key order or formatting; a changed
rule, owner or default changes it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from datetime import date
from typing import Any

from dialer.config import Config, DateRange, TimeRange

__all__ = ["canonical_json", "ruleset_document", "ruleset_version"]


def _canonical(value: Any) -> Any:
    if isinstance(value, TimeRange):
        return str(value)
    if isinstance(value, DateRange):
        return [value.start.isoformat(), value.end.isoformat()]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 300 and 300.0 (a parsed "5m") are the same policy
    return value


def ruleset_document(config: Config) -> dict[str, Any]:
    """The routing policy of ``config`` as a JSON-able dict (what is hashed and stored)."""
    document: dict[str, Any] = {
        "rules": _canonical(config.routing.rules),
        "fallback": _canonical(config.routing.fallback),
        "owners": _canonical(config.owners),
        "ringing": _canonical(config.ringing),
        "sla": _canonical(config.sla),
        "compliance": _canonical(config.compliance),
    }
    return document


def canonical_json(document: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 as is."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ruleset_version(config: Config) -> str:
    """``sha256`` hex digest of the canonical rule-set document."""
    return hashlib.sha256(canonical_json(ruleset_document(config)).encode()).hexdigest()
