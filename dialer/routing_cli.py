"""``dialer route explain --config dialer.toml lead.json [--json]``: why a lead goes where.

Offline and pure: the config's rules and reps, the lead from a JSON file (the ``POST
/v1/leads`` body), the current time; no database, so reps are taken as fresh and available
apart from what the config itself says (working hours, PTO). The daemon's live view (busy,
reserved, DNC) is ``POST /v1/routing/explain``. A config the daemon would refuse is refused here
with the same one-line error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dialer.config import ConfigError, load_config
from dialer.routing import InvalidLeadError, RepState, Router, facts_from_json

__all__ = ["EXIT_OK", "EXIT_USAGE", "explain_command", "format_explanation"]

EXIT_OK = 0
#: Configuration or input error (same code as the rest of the CLI).
EXIT_USAGE = 2


def explain_command(
    config_path: Path | str | None,
    lead_json_path: Path | str,
    *,
    as_json: bool,
    now: datetime | None = None,
    rep_states: Mapping[str, RepState] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the routing explanation of one lead; returns the exit code.

    ``now`` defaults to the current time; ``rep_states`` (default: none, everyone fresh) is for
    callers that have live state.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    moment = now if now is not None else datetime.now(UTC)
    try:
        config = load_config(Path(config_path) if config_path is not None else None)
        router = Router(config)
    except ConfigError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    path = Path(lead_json_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        err.write(f"lead error: {path}: cannot read: {exc.strerror or exc}\n")
        return EXIT_USAGE
    except (UnicodeDecodeError, ValueError) as exc:
        err.write(f"lead error: {path}: invalid JSON: {' '.join(str(exc).split())}\n")
        return EXIT_USAGE
    if not isinstance(data, dict):
        err.write(f"lead error: {path}: expected a JSON object\n")
        return EXIT_USAGE
    try:
        facts = facts_from_json(data, now=moment, default_region=config.api.default_region)
    except InvalidLeadError as exc:
        err.write(f"lead error: {path}: {exc}\n")
        return EXIT_USAGE
    explanation = router.explain(facts, rep_states or {}, moment)
    if as_json:
        out.write(json.dumps(explanation, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(format_explanation(explanation))
    return EXIT_OK


def format_explanation(explanation: Mapping[str, Any]) -> str:
    """The explanation (``RoutingDecision.to_json()``) as text for a terminal."""
    facts = explanation["facts"]
    lines: list[str] = []
    where = ", ".join(str(part) for part in (facts["country"], facts["region"]) if part)
    zones = facts["timezones"]
    zone_text = zones[0] if len(zones) == 1 else f"{len(zones)} possible zones"
    local = f"local {facts['local_weekday']} {facts['local_time']}" if facts["local_time"] else ""
    details = "; ".join(part for part in (where, zone_text, local) if part)
    lines.append(f"lead {explanation['lead']}: {facts['phone']} ({details})")
    lines.append(f"rule set {explanation['version'][:12]} at {explanation['decided_at']}")
    lines.append("rules (first match wins):")
    if not explanation["rules"]:
        lines.append("  (none: every lead goes to the fallback)")
    width = max((len(rule["rule"]) for rule in explanation["rules"]), default=0)
    for rule in explanation["rules"]:
        if rule["matched"]:
            verdict = "MATCH, used" if rule["used"] else "match, but an earlier rule won"
        elif rule["error"]:
            verdict = f"no match: {rule['error']}"
        else:
            verdict = "no match"
        lines.append(f"  {rule['rule']:<{width}}  {verdict}")
    pool = explanation["pool"] or "none"
    lines.append(f"routed by: {explanation['rule']} (pool: {pool}, {explanation['strategy']})")
    lines.append("candidates:")
    if not explanation["candidates"]:
        lines.append("  (no reps)")
    rep_width = max((len(c["rep"]) for c in explanation["candidates"]), default=0)
    for candidate in explanation["candidates"]:
        kept = "kept   " if candidate["eligible"] else "skipped"
        reason = candidate.get("detail") or candidate["reason"]
        lines.append(f"  [{candidate['pool']}] {candidate['rep']:<{rep_width}}  {kept}  {reason}")
    plan = explanation["ring_plan"]
    if plan["targets"]:
        lines.append(
            f"ring plan: {plan['mode']}, {plan['ring_timeout_s']:g}s per leg, "
            f"accept by {plan['accept']}: {', '.join(plan['targets'])}"
        )
    else:
        lines.append("ring plan: nobody available; the lead waits for the first free rep")
    sla = explanation["sla"]
    lines.append(f"sla: due {sla['due_at']} ({sla['seconds']:g}s, from {sla['source']})")
    compliance = explanation["compliance"]
    if compliance["allowed"]:
        lines.append("compliance: allowed")
    elif compliance["next_allowed_at"]:
        lines.append(
            f"compliance: not now ({compliance['detail']}); "
            f"scheduled for {compliance['next_allowed_at']}"
        )
    else:
        lines.append(f"compliance: blocked, {compliance['reason']} ({compliance['detail']})")
    lines.append(f"outcome: {explanation['outcome']}")
    return "\n".join(lines) + "\n"
