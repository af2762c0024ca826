"""The router: from lead facts and rep states to a ring plan, with the reasons why.

Built once from :class:`~dialer.config.Config` (rules compiled, pools resolved to index arrays),
then :meth:`Router.decide` is a pure function of its inputs: lead facts, rep live states,
round-robin cursors, DNC membership, attempts today and ``now``. It never reads a clock or the
database; the store keeps the states and cursors durably and reserves the chosen reps.

The chain: rules in order, first match wins -> that rule's pool -> its ``overflow`` pool ->
the fallback rule's pool (absent fallback: every rep, round robin, ringing per ``[ringing]``)
-> ``waiting_for_rep``. The compliance gate runs for every decision.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from dialer.config import Config, ConfigError, PoolConfig, RuleConfig, Strategy
from dialer.domain import RepStatus, RingMode, RingPlan, RingTarget
from dialer.routing import strategies
from dialer.routing.availability import (
    AVAILABLE,
    RepSchedule,
    RepState,
    Unavailable,
    describe,
)
from dialer.routing.compliance import CompliancePolicy, ComplianceVerdict
from dialer.routing.facts import LeadFacts
from dialer.routing.rules import (
    Condition,
    ConditionResult,
    RoutingConfigError,
    evaluate_rules,
    new_activation,
)
from dialer.routing.version import ruleset_version

__all__ = [
    "EXCLUDED",
    "FALLBACK",
    "Candidate",
    "Outcome",
    "PoolStage",
    "Router",
    "RoutingDecision",
    "RuleEvaluation",
]

#: Name of the fallback rule (and of ``rule`` in a decision no rule matched).
FALLBACK: Final = "fallback"

#: The reason of a rep the caller excluded (``decide(exclude=...)``): a rep who already
#: missed this lead, so a re-route falls through to the overflow pool, then the fallback.
EXCLUDED: Final = "excluded: already missed"

_NO_STATES: Mapping[str, RepState] = MappingProxyType({})
_NO_CURSORS: Mapping[str, int] = MappingProxyType({})
_UNSET: Any = object()
_STATUS_BLOCK: Mapping[str, Unavailable] = {
    RepStatus.BUSY: Unavailable.BUSY,
    RepStatus.WRAP_UP: Unavailable.WRAP_UP,
    RepStatus.AWAY: Unavailable.AWAY,
    RepStatus.OFFLINE: Unavailable.OFFLINE,
}


class Outcome(enum.StrEnum):
    """What the pipeline should do with the lead."""

    #: Ring ``ring_plan`` (after reserving its reps).
    ROUTED = "routed"
    #: Compliance allows it but no rep qualifies: queue it (oldest SLA first).
    WAITING_FOR_REP = "waiting_for_rep"
    #: Only calling hours block it: run again at ``compliance.next_allowed_at``.
    SCHEDULED = "scheduled"
    #: A compliance rule forbids calling the prospect (reason in ``compliance``).
    BLOCKED = "blocked_compliance"


class PoolStage(enum.StrEnum):
    """Which pool the reps of a decision came from."""

    RULE = "rule"
    OVERFLOW = "overflow"
    FALLBACK = "fallback"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One rep of a pool that was tried, and whether they qualified."""

    rep: str
    eligible: bool
    #: ``available`` or an :class:`~dialer.routing.availability.Unavailable` code.
    reason: str
    pool: PoolStage
    #: Human words (filled when the decision was made with ``explain=True``).
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view."""
        value: dict[str, Any] = {
            "rep": self.rep,
            "eligible": self.eligible,
            "reason": self.reason,
            "pool": self.pool.value,
        }
        if self.detail is not None:
            value["detail"] = self.detail
        return value


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """How one rule's ``when`` came out for the lead."""

    rule: str
    matched: bool
    error: str | None = None
    #: False for a rule that matched after an earlier one already won (explain only).
    used: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view."""
        return {"rule": self.rule, "matched": self.matched, "used": self.used, "error": self.error}


@dataclass(frozen=True, slots=True)
class _Screened:
    stage: PoolStage
    rep_ids: tuple[str, ...]
    #: Reason of each ineligible member, by pool position (eligible ones are absent).
    blocked: dict[int, str]
    details: list[str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingDecision:
    """What routing decided for one lead at one instant, and why.

    Act on ``ring_plan`` only when ``outcome`` is ``routed``: it is also filled (for the
    explanation) when compliance blocks the lead.
    """

    lead_id: str
    decided_at: datetime
    outcome: Outcome
    #: The matched rule's name, or ``"fallback"`` when no rule matched.
    rule: str
    #: Where the reps came from; ``None`` when no pool had an eligible rep.
    pool: PoolStage | None
    strategy: Strategy
    #: Reps to ring (the first ``ring_size`` of ``ordered_reps``); ``None`` when nobody qualifies.
    ring_plan: RingPlan | None
    ring_size: int
    #: ``answer`` or ``press1``.
    accept: str
    #: Every rep of the pool used, in pool order, and the cursor the store advances
    #: (round robin only).
    pool_reps: tuple[str, ...]
    cursor_key: str | None
    cursor_after: int | None
    sla_seconds: float
    sla_due_at: datetime
    #: ``rule`` (the rule's ``sla``), ``intent:<tier>`` or ``default``.
    sla_source: str
    compliance: ComplianceVerdict
    #: The rule-set version hash.
    version: str
    facts: LeadFacts
    _screened: tuple[_Screened, ...] = field(repr=False)
    # Kept as the router computed them; the public views below are built on demand so that a
    # decision costs no per-rep or per-rule allocation unless someone looks.
    _order: list[int] = field(repr=False)
    _all_rep_ids: tuple[str, ...] = field(repr=False)
    _rule_names: tuple[str, ...] = field(repr=False)
    _results: list[ConditionResult] = field(repr=False)

    @property
    def ordered_reps(self) -> tuple[str, ...]:
        """Every eligible rep of the pool used, in the strategy's order.

        Reservation tries them in this order, so a rep taken by another daemon meanwhile is
        replaced by the next one.
        """
        rep_ids = self._all_rep_ids
        return tuple(rep_ids[index] for index in self._order)

    @property
    def rules_evaluated(self) -> tuple[RuleEvaluation, ...]:
        """Each rule evaluated, in order (all of them when decided with ``explain``)."""
        evaluations: list[RuleEvaluation] = []
        winner_seen = False
        for name, result in zip(self._rule_names, self._results, strict=False):
            used = result.matched and not winner_seen
            winner_seen = winner_seen or result.matched
            evaluations.append(RuleEvaluation(name, result.matched, result.error, used))
        return tuple(evaluations)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every rep of every pool tried, in pool order, with why each was kept or skipped."""
        result: list[Candidate] = []
        for screened in self._screened:
            for position, rep in enumerate(screened.rep_ids):
                reason = screened.blocked.get(position, AVAILABLE)
                detail = None if screened.details is None else screened.details[position]
                result.append(
                    Candidate(rep, reason == AVAILABLE, str(reason), screened.stage, detail)
                )
        return tuple(result)

    @property
    def targets(self) -> tuple[str, ...]:
        """Rep ids of the ring plan, in ring order."""
        return () if self.ring_plan is None else tuple(t.rep_id for t in self.ring_plan.targets)

    def _candidates_json(self, limit: int | None) -> dict[str, Any]:
        total = sum(len(screened.rep_ids) for screened in self._screened)
        if limit is None or total <= limit:
            return {"candidates": [candidate.to_json() for candidate in self.candidates]}
        listed: list[dict[str, Any]] = []
        counts: dict[str, dict[str, int]] = {}
        for screened in self._screened:
            blocked = screened.blocked
            by_reason = counts.setdefault(screened.stage.value, {})
            eligible = len(screened.rep_ids) - len(blocked)
            if eligible:
                by_reason[AVAILABLE] = by_reason.get(AVAILABLE, 0) + eligible
            for reason in blocked.values():
                by_reason[str(reason)] = by_reason.get(str(reason), 0) + 1
            for position, rep in enumerate(screened.rep_ids):
                if len(listed) >= limit:
                    break
                if position not in blocked:
                    listed.append(Candidate(rep, True, AVAILABLE, screened.stage).to_json())
        return {
            "candidates": listed,
            "candidates_listed": "eligible_first_only",
            "candidate_counts": counts,
        }

    def to_json(self, *, max_candidates: int | None = None) -> dict[str, Any]:
        """The explanation as one JSON-able object (``route explain --json``, the API).

        ``max_candidates`` bounds ``candidates`` for the record kept with every lead: when the
        pools tried hold more reps than that, only the first ``max_candidates`` eligible ones
        are listed (pool order) and ``candidate_counts`` gives how many reps of each pool were
        kept or skipped for each reason; ``candidates_listed`` says the list is partial. With
        a floor of thousands of reps the full list is hundreds of KB per lead.
        """
        plan = self.ring_plan
        return {
            "lead": self.lead_id,
            "decided_at": self.decided_at.isoformat(),
            "version": self.version,
            "outcome": self.outcome.value,
            "rule": self.rule,
            "pool": None if self.pool is None else self.pool.value,
            "strategy": self.strategy.value,
            "rules": [evaluation.to_json() for evaluation in self.rules_evaluated],
            "ring_plan": {
                "mode": None if plan is None else plan.mode.value,
                "targets": list(self.targets),
                "ring_timeout_s": None if plan is None else plan.ring_timeout_s,
                "wave_size": None if plan is None else plan.wave_size,
                "accept": self.accept,
            },
            **self._candidates_json(max_candidates),
            "sla": {
                "due_at": self.sla_due_at.isoformat(),
                "seconds": self.sla_seconds,
                "source": self.sla_source,
            },
            "compliance": self.compliance.to_json(),
            "facts": self.facts.to_json(self.decided_at),
        }


class _Pool:
    """A resolved pool: rep indices in pool order, their ids, and what screening reads."""

    __slots__ = ("members", "rep_ids", "rows")

    def __init__(
        self,
        members: Sequence[int],
        *,
        rep_ids: Sequence[str],
        unrestricted: Sequence[bool],
        max_hour: Sequence[int | None],
        max_day: Sequence[int | None],
    ) -> None:
        self.members = tuple(members)
        self.rep_ids = tuple(rep_ids[index] for index in self.members)
        self.rows = tuple(
            (index, rep_ids[index], unrestricted[index], max_hour[index], max_day[index])
            for index in self.members
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Route:
    name: str
    key_path: str
    condition: Condition
    pool: _Pool
    overflow: _Pool | None
    strategy: Strategy
    mode: RingMode
    size: int | None
    ring_timeout_s: float
    sla_s: float | None
    accept: str


class Router:
    """Routing rules compiled from a config; :meth:`decide` picks reps for a lead.

    Not thread-safe (it memoizes reps' working-hours state per minute); use one per event loop.
    """

    def __init__(self, config: Config, *, rng: random.Random | None = None) -> None:
        """Compile ``config``'s rules; raises :class:`RoutingConfigError` naming a bad rule."""
        self._rng = rng if rng is not None else random.Random()
        self.version = ruleset_version(config)
        self._config = config
        reps = config.reps
        self.rep_ids: tuple[str, ...] = tuple(rep.id for rep in reps)
        self._index = {rep_id: index for index, rep_id in enumerate(self.rep_ids)}
        self._targets = tuple(RingTarget(rep_id=rep.id, uri=rep.sip_uri) for rep in reps)
        self._weights = tuple(rep.weight for rep in reps)
        self._max_hour = tuple(rep.max_leads_per_hour for rep in reps)
        self._max_day = tuple(rep.max_leads_per_day for rep in reps)
        self._schedules = tuple(RepSchedule.for_rep(rep) for rep in reps)
        self._unrestricted = tuple(schedule.unrestricted for schedule in self._schedules)
        self._team_ids = config.team_ids
        self._caller_id = config.trunks[0].caller_id if config.trunks else ""
        self._wave_size = config.ringing.wave_size
        self._accept_timeout_s = config.ringing.accept_timeout_s
        self._compliance = CompliancePolicy(config.compliance)
        self._sla = config.sla
        owners: dict[str, int] = {}
        for number, owner in enumerate(config.owners):
            index = self._index.get(owner.rep)
            if index is None:
                raise ConfigError(f"owners[{number}].rep", f'unknown rep "{owner.rep}"')
            owners[owner.domain.strip().lower()] = index
        self._owners = owners
        names: set[str] = set()
        routes: list[_Route] = []
        for number, rule in enumerate(config.routing.rules):
            key_path = f"routing.rules[{number}]"
            if rule.name in names or rule.name == FALLBACK:
                raise RoutingConfigError(f"{key_path}.name", rule.name, "duplicate rule name")
            names.add(rule.name)
            routes.append(self._compile(rule, key_path))
        self._routes = tuple(routes)
        self._rule_names = tuple(route.name for route in routes)
        self._programs = tuple(route.condition.program for route in routes)
        fallback = config.routing.fallback or RuleConfig(name=FALLBACK)
        self._fallback = self._compile(fallback, "routing.fallback")
        lead_keys: set[str] | None = set()
        extensions: set[str] = set()
        # The fallback's ``when`` is compiled (to validate it) but never evaluated.
        for route in self._routes:
            extensions |= route.condition.extension_functions
            if route.condition.always:
                continue
            if lead_keys is not None and route.condition.lead_keys is not None:
                lead_keys |= route.condition.lead_keys
            else:
                lead_keys = None
        self._lead_keys = None if lead_keys is None else frozenset(lead_keys)
        self._extensions = tuple(sorted(extensions))
        self._cache_minute = -1
        self._time_blocks: list[Any] = []

    # ----------------------------------------------------------------------- building

    @property
    def rule_names(self) -> tuple[str, ...]:
        """The rules in evaluation order (the fallback excluded)."""
        return tuple(route.name for route in self._routes)

    def _compile(self, rule: RuleConfig, key_path: str) -> _Route:
        try:
            strategy = Strategy(rule.strategy)
        except ValueError:
            choices = ", ".join(item.value for item in Strategy)
            raise RoutingConfigError(
                f"{key_path}.strategy",
                rule.name,
                f'unknown strategy "{rule.strategy}" (expected one of {choices})',
            ) from None
        condition = Condition(rule.when, key_path=f"{key_path}.when", rule=rule.name)
        pool = self._resolve(rule.pool, f"{key_path}.pool", rule.name)
        overflow = (
            None
            if rule.overflow is None
            else self._resolve(rule.overflow, f"{key_path}.overflow", rule.name)
        )
        ringing = self._config.ringing
        ring = rule.ring
        try:
            mode = RingMode(ring.mode if ring is not None and ring.mode else ringing.mode)
        except ValueError:
            raise RoutingConfigError(
                f"{key_path}.ring.mode", rule.name, f'unknown ring mode "{ring and ring.mode}"'
            ) from None
        size = ring.size if ring is not None else None
        if size is not None and size < 1:
            raise RoutingConfigError(f"{key_path}.ring.size", rule.name, "expected at least 1")
        timeout = (
            ring.ring_timeout_s
            if ring is not None and ring.ring_timeout_s is not None
            else ringing.ring_timeout_s
        )
        return _Route(
            name=rule.name,
            key_path=key_path,
            condition=condition,
            pool=pool,
            overflow=overflow,
            strategy=strategy,
            mode=mode,
            size=size,
            ring_timeout_s=timeout,
            sla_s=rule.sla,
            accept=rule.accept or ringing.accept,
        )

    def _resolve(self, pool: PoolConfig, key_path: str, rule: str) -> _Pool:
        """Pool order: listed reps first, then each team's members in config order."""
        for number, team in enumerate(pool.teams):
            if team not in self._team_ids:
                raise RoutingConfigError(
                    f"{key_path}.teams[{number}]", rule, f'unknown team "{team}"'
                )
        for number, rep_id in enumerate(pool.reps):
            if rep_id not in self._index:
                raise RoutingConfigError(
                    f"{key_path}.reps[{number}]", rule, f'unknown rep "{rep_id}"'
                )
        reps = self._config.reps
        members: list[int] = []
        seen: set[int] = set()

        def add(index: int) -> None:
            if index not in seen:
                seen.add(index)
                members.append(index)

        for rep_id in pool.reps:
            add(self._index[rep_id])
        for team in pool.teams:
            for index, rep in enumerate(reps):
                if team in rep.teams:
                    add(index)
        if not pool.teams and not pool.reps:
            for index in range(len(reps)):
                add(index)
        if pool.skills:
            wanted = set(pool.skills)
            members = [
                index
                for index in members
                if wanted <= set(reps[index].skills) | set(reps[index].languages)
            ]
        return _Pool(
            members,
            rep_ids=self.rep_ids,
            unrestricted=self._unrestricted,
            max_hour=self._max_hour,
            max_day=self._max_day,
        )

    # ----------------------------------------------------------------------- deciding

    def decide(
        self,
        facts: LeadFacts,
        rep_states: Mapping[str, RepState] = _NO_STATES,
        now: datetime | None = None,
        *,
        cursors: Mapping[str, int] = _NO_CURSORS,
        on_dnc: bool = False,
        attempts_today: int = 0,
        explain: bool = False,
        exclude: Collection[str] = (),
    ) -> RoutingDecision:
        """Decide for one lead at ``now`` (aware; required: the router never reads a clock).

        ``rep_states`` maps rep id to live state (a missing rep is fresh and available);
        ``cursors`` maps a decision's ``cursor_key`` to the round-robin position. With
        ``explain`` every rule is evaluated (not only up to the first match) and candidates
        carry human details. Reps in ``exclude`` (those who already missed the lead) are
        ineligible with reason :data:`EXCLUDED`, so the decision falls through to the rule's
        overflow pool, then the fallback.
        """
        if now is None:
            raise TypeError("decide() needs now: the router never reads a clock")
        results: list[ConditionResult] = []
        first = evaluate_rules(
            self._programs,
            lambda: new_activation(facts.cel_value(now, self._lead_keys), self._extensions),
            results,
            every_rule=explain,
        )
        matched = self._routes[first] if first >= 0 else None

        route = matched if matched is not None else self._fallback
        stages: list[tuple[PoolStage, _Pool, _Route, str]] = [
            (PoolStage.RULE if matched else PoolStage.FALLBACK, route.pool, route, route.name)
        ]
        if route.overflow is not None:
            stages.append((PoolStage.OVERFLOW, route.overflow, route, f"{route.name}#overflow"))
        if matched is not None:
            fallback = self._fallback
            stages.append((PoolStage.FALLBACK, fallback.pool, fallback, fallback.name))

        minute = int(now.timestamp() // 60)
        if minute != self._cache_minute:
            self._cache_minute = minute
            self._time_blocks = [_UNSET] * len(self.rep_ids)

        screened: list[_Screened] = []
        used_stage: PoolStage | None = None
        used_pool: _Pool | None = None
        ring_route = route
        order: list[int] = []
        cursor_key: str | None = None
        cursor_after: int | None = None
        for stage, pool, stage_route, key in stages:
            eligible, blocked = self._screen(pool, rep_states, facts.lead_id, now, exclude)
            details = self._details(pool, blocked, rep_states, now) if explain else None
            screened.append(_Screened(stage, pool.rep_ids, blocked, details))
            if not eligible:
                continue
            used_stage, used_pool, ring_route = stage, pool, stage_route
            order, cursor_key, cursor_after = self._order(
                strategy=stage_route.strategy,
                pool=pool,
                eligible=eligible,
                key=key,
                facts=facts,
                rep_states=rep_states,
                cursors=cursors,
            )
            break

        size = len(order) if ring_route.size is None else min(ring_route.size, len(order))
        plan: RingPlan | None = None
        if order:
            plan = RingPlan(
                targets=tuple(self._targets[index] for index in order[:size]),
                mode=ring_route.mode,
                wave_size=self._wave_size,
                ring_timeout_s=ring_route.ring_timeout_s,
                accept=ring_route.accept,
                accept_timeout_s=self._accept_timeout_s,
                prospect_number=facts.phone,
                caller_id=self._caller_id,
                lead=facts.lead_context(),
            )

        sla_route = matched if matched is not None else self._fallback
        if sla_route.sla_s is not None:
            sla_seconds, sla_source = sla_route.sla_s, "rule"
        else:
            sla_seconds = self._sla.for_intent(facts.intent)
            sla_source = "default" if facts.intent is None else f"intent:{facts.intent.value}"

        verdict = self._compliance.check(
            now=now,
            timezones=facts.timezones,
            consent=facts.consent,
            on_dnc=on_dnc,
            attempts_today=attempts_today,
        )
        if not verdict.allowed:
            outcome = Outcome.SCHEDULED if verdict.scheduled else Outcome.BLOCKED
        elif plan is not None:
            outcome = Outcome.ROUTED
        else:
            outcome = Outcome.WAITING_FOR_REP

        return RoutingDecision(
            lead_id=facts.lead_id,
            decided_at=now,
            outcome=outcome,
            rule=route.name,
            pool=used_stage,
            strategy=ring_route.strategy,
            ring_plan=plan,
            ring_size=size,
            accept=ring_route.accept,
            pool_reps=() if used_pool is None else used_pool.rep_ids,
            cursor_key=cursor_key,
            cursor_after=cursor_after,
            sla_seconds=sla_seconds,
            sla_due_at=facts.clock_start + timedelta(seconds=sla_seconds),
            sla_source=sla_source,
            compliance=verdict,
            version=self.version,
            facts=facts,
            _screened=tuple(screened),
            _order=order,
            _all_rep_ids=self.rep_ids,
            _rule_names=self._rule_names,
            _results=results,
        )

    def explain(
        self,
        facts: LeadFacts,
        rep_states: Mapping[str, RepState] = _NO_STATES,
        now: datetime | None = None,
        *,
        cursors: Mapping[str, int] = _NO_CURSORS,
        on_dnc: bool = False,
        attempts_today: int = 0,
        exclude: Collection[str] = (),
    ) -> dict[str, Any]:
        """``decide(..., explain=True).to_json()``: the explanation, without placing a call."""
        return self.decide(
            facts,
            rep_states,
            now,
            cursors=cursors,
            on_dnc=on_dnc,
            attempts_today=attempts_today,
            explain=True,
            exclude=exclude,
        ).to_json()

    def ring_plan_for(self, decision: RoutingDecision, rep_ids: Sequence[str]) -> RingPlan:
        """The decision's ring plan with the reps actually reserved, in ``rep_ids`` order."""
        if decision.ring_plan is None:
            raise ValueError(f"lead {decision.lead_id}: the decision has no ring plan")
        targets = tuple(self._targets[self._index[rep_id]] for rep_id in rep_ids)
        return replace(decision.ring_plan, targets=targets)

    def _screen(
        self,
        pool: _Pool,
        rep_states: Mapping[str, RepState],
        lead_id: str,
        now: datetime,
        exclude: Collection[str] = (),
    ) -> tuple[list[int], dict[int, str]]:
        """Eligible pool positions, and the reason of each ineligible one by position.

        The hot loop of routing: the same checks as ``availability.state_block``, inlined.
        """
        eligible: list[int] = []
        blocked: dict[int, str] = {}
        keep = eligible.append
        time_blocks = self._time_blocks
        schedules = self._schedules
        get_state = rep_states.get
        available = RepStatus.AVAILABLE
        for position, (index, rep_id, unrestricted, max_hour, max_day) in enumerate(pool.rows):
            if exclude and rep_id in exclude:
                blocked[position] = EXCLUDED
                continue
            if not unrestricted:
                block = time_blocks[index]
                if block is _UNSET:
                    block = time_blocks[index] = schedules[index].block(now)
                if block is not None:
                    blocked[position] = block
                    continue
            state = get_state(rep_id)
            if state is not None:
                status = state.status
                if status is not available and status != available:
                    blocked[position] = _STATUS_BLOCK.get(status, Unavailable.OFFLINE)
                    continue
                holder = state.reserved_by
                if (
                    holder is not None
                    and holder != lead_id
                    and (state.reserved_until is None or state.reserved_until > now)
                ):
                    blocked[position] = Unavailable.RESERVED
                    continue
                if max_hour is not None and state.leads_last_hour >= max_hour:
                    blocked[position] = Unavailable.CAPACITY_HOUR
                    continue
                if max_day is not None and state.leads_today >= max_day:
                    blocked[position] = Unavailable.CAPACITY_DAY
                    continue
            keep(position)
        return eligible, blocked

    def _details(
        self,
        pool: _Pool,
        blocked: Mapping[int, str],
        rep_states: Mapping[str, RepState],
        now: datetime,
    ) -> list[str]:
        return [
            EXCLUDED
            if reason == EXCLUDED
            else describe(
                reason,
                schedule=self._schedules[index],
                state=rep_states.get(self.rep_ids[index]),
                now=now,
                max_per_hour=self._max_hour[index],
                max_per_day=self._max_day[index],
            )
            for position, index in enumerate(pool.members)
            for reason in (blocked.get(position, AVAILABLE),)
        ]

    def _order(
        self,
        *,
        strategy: Strategy,
        pool: _Pool,
        eligible: list[int],
        key: str,
        facts: LeadFacts,
        rep_states: Mapping[str, RepState],
        cursors: Mapping[str, int],
    ) -> tuple[list[int], str | None, int | None]:
        """Rep indices in offer order, and the round-robin cursor key and next position."""
        members = pool.members
        if strategy is Strategy.ROUND_ROBIN:
            size = len(members)
            positions = strategies.round_robin(eligible, size, cursors.get(key, 0))
            return [members[p] for p in positions], key, (positions[0] + 1) % size
        indices = [members[p] for p in eligible]
        if strategy is Strategy.WEIGHTED:
            weights = [self._weights[index] for index in indices]
            return strategies.weighted(indices, weights, self._rng), None, None
        if strategy is Strategy.RANDOM:
            return strategies.random_order(indices, self._rng), None, None
        if strategy is Strategy.OWNER:
            domain = facts.email_domain
            owner = None if domain is None else self._owners.get(domain)
            return strategies.owner_first(indices, owner), None, None
        states = [rep_states.get(self.rep_ids[index]) for index in indices]
        if strategy is Strategy.LEAST_RECENT:
            last = [None if state is None else state.last_assigned_at for state in states]
            return strategies.least_recent(indices, last), None, None
        calls = [0 if state is None else state.calls_today for state in states]
        return strategies.fewest_calls(indices, calls), None, None
