"""Routing and compliance: explicit, versioned, explainable rules that pick reps for a lead.

Pure: no I/O and no clock. Build a :class:`Router` once from the config (rules compiled, pools
resolved); call :meth:`Router.decide` with a lead's :class:`LeadFacts`, the reps' live
:class:`RepState` s, round-robin cursors and ``now``; act on the :class:`RoutingDecision`
(``outcome``, ``ring_plan``) and store its ``to_json()`` explanation and ``version``.
"""

from __future__ import annotations

from dialer.routing.availability import AVAILABLE, RepSchedule, RepState, Unavailable
from dialer.routing.compliance import ComplianceBlock, CompliancePolicy, ComplianceVerdict
from dialer.routing.engine import (
    FALLBACK,
    Candidate,
    Outcome,
    PoolStage,
    Router,
    RoutingDecision,
    RuleEvaluation,
)
from dialer.routing.facts import (
    CEL_LEAD_KEYS,
    InvalidLeadError,
    LeadFacts,
    derive_facts,
    facts_for_lead,
    facts_from_json,
)
from dialer.routing.rules import Condition, ConditionResult, RoutingConfigError
from dialer.routing.version import canonical_json, ruleset_document, ruleset_version

__all__ = [
    "AVAILABLE",
    "CEL_LEAD_KEYS",
    "FALLBACK",
    "Candidate",
    "ComplianceBlock",
    "CompliancePolicy",
    "ComplianceVerdict",
    "Condition",
    "ConditionResult",
    "InvalidLeadError",
    "LeadFacts",
    "Outcome",
    "PoolStage",
    "RepSchedule",
    "RepState",
    "Router",
    "RoutingConfigError",
    "RoutingDecision",
    "RuleEvaluation",
    "Unavailable",
    "canonical_json",
    "derive_facts",
    "facts_for_lead",
    "facts_from_json",
    "ruleset_document",
    "ruleset_version",
]
