"""Rule conditions: CEL expressions over ``lead``, compiled once when the rule set loads.

A condition that does not compile, names a variable other than ``lead``, reads a lead fact
that does not exist or calls an unknown function stops the load with a
:class:`RoutingConfigError` naming the rule. At routing time a condition that fails to
evaluate (a missing ``fields`` key, a type mismatch) simply does not match; the error is kept
for the explanation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cel
from cel import stdlib as cel_stdlib

from dialer.config import ConfigError
from dialer.routing.facts import CEL_LEAD_KEYS

__all__ = [
    "LEAD_VARIABLE",
    "Condition",
    "ConditionResult",
    "RoutingConfigError",
    "evaluate_rules",
    "new_activation",
]

#: The one variable rules can read.
LEAD_VARIABLE = "lead"

# Functions the Rust CEL core evaluates natively (macros such as ``has``/``all`` never show up
# as functions; timestamp and duration accessors do).
_NATIVE_FUNCTIONS = frozenset(
    {
        "size",
        "contains",
        "startsWith",
        "endsWith",
        "matches",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "bool",
        "timestamp",
        "duration",
        "type",
        "dyn",
        "getFullYear",
        "getMonth",
        "getDayOfYear",
        "getDayOfMonth",
        "getDate",
        "getDayOfWeek",
        "getHours",
        "getMinutes",
        "getSeconds",
        "getMilliseconds",
    }
)
# cel-go style extensions implemented in Python by the package; registered only when used.
_EXTENSION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: function
    for name, function in cel_stdlib.STDLIB_FUNCTIONS.items()
    if name not in _NATIVE_FUNCTIONS
}
_NAMED_FUNCTION = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
# A comprehension binds its first argument: ``lead.fields.tags.exists(t, t == "vip")``.
_MACRO_BINDING = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_STRING_LITERAL = re.compile(
    r"""[rR]?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")""", re.DOTALL
)
_LEAD_USE = re.compile(r"(?<![\w.])lead\b(\s*\.\s*([A-Za-z_]\w*))?")


class RoutingConfigError(ConfigError):
    """The rule set cannot be loaded; ``str()`` is one line naming the rule and the key.

    e.g. ``config error: routing.rules[2].when: rule "hot-us": invalid CEL: ...``
    """

    def __init__(self, key_path: str, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(key_path, f'rule "{rule}": {message}')


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """The outcome of one condition for one lead."""

    matched: bool
    #: Why it did not match when evaluation failed (``None`` when it evaluated cleanly).
    error: str | None = None


_MATCHED = ConditionResult(True)
_NOT_MATCHED = ConditionResult(False)


def _cel_error_text(exc: BaseException) -> str:
    """One line from a CEL error (the library adds caret diagrams and advice)."""
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else exc}"
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("|")]
    text = " ".join(kept) or type(exc).__name__
    if text.startswith("Failed to parse expression") and "': " in text:
        text = text.split("': ", 1)[1]  # the source is in the config already
    for noise in (" Check that the variable", " CEL does not coerce between types"):
        cut = text.find(noise)
        if cut > 0:
            text = text[:cut]
    return text


class Condition:
    """A compiled ``when``: ``evaluate(activation)`` says whether a lead matches."""

    __slots__ = ("_program", "always", "extension_functions", "lead_keys", "source")

    #: The source text, as configured.
    source: str
    #: True for the literal ``true``: no CEL runs at all.
    always: bool
    #: Lead facts the expression reads; ``None`` when it uses ``lead`` as a whole.
    lead_keys: frozenset[str] | None
    #: Extension functions the expression calls (registered on the activation).
    extension_functions: frozenset[str]

    def __init__(self, source: str, *, key_path: str, rule: str) -> None:
        self.source = source
        self.always = source.strip() == "true"
        try:
            self._program = cel.compile(source)
        except Exception as exc:  # the binding raises ValueError, or a Rust panic error
            raise RoutingConfigError(
                key_path, rule, f"invalid CEL: {_cel_error_text(exc)}"
            ) from None
        without_strings = _STRING_LITERAL.sub('""', source)
        bound = set(_MACRO_BINDING.findall(without_strings))
        for name in self._program.variables():
            if name != LEAD_VARIABLE and name not in bound:
                raise RoutingConfigError(
                    key_path, rule, f'unknown variable "{name}" (rules can read "lead")'
                )
        self.lead_keys = _lead_keys(without_strings, key_path, rule)
        extensions: set[str] = set()
        for function in self._program.functions():
            if not _NAMED_FUNCTION.match(function) or function in _NATIVE_FUNCTIONS:
                continue
            if function not in _EXTENSION_FUNCTIONS:
                raise RoutingConfigError(key_path, rule, f'unknown function "{function}"')
            extensions.add(function)
        self.extension_functions = frozenset(extensions)

    @property
    def program(self) -> cel.Program | None:
        """The compiled program; ``None`` for the literal ``true``."""
        return None if self.always else self._program

    def evaluate(self, activation: cel.Context) -> ConditionResult:
        """Match or not; an evaluation error (or a non-boolean result) is a non-match."""
        if self.always:
            return _MATCHED
        try:
            result = self._program.execute(activation)
        except Exception as exc:  # every CEL runtime error means "does not match"
            return ConditionResult(False, _cel_error_text(exc))
        if result is True:
            return _MATCHED
        if result is False:
            return _NOT_MATCHED
        return ConditionResult(False, f"expression gave {type(result).__name__}, not bool")


def evaluate_rules(
    programs: Sequence[cel.Program | None],
    make_activation: Callable[[], cel.Context],
    results: list[ConditionResult],
    *,
    every_rule: bool = False,
) -> int:
    """Evaluate rules in order until the first match (all of them with ``every_rule``).

    Appends one result per evaluated rule to ``results`` and returns the index of the first
    match, or -1. The hot loop of routing: :meth:`Condition.evaluate`, inlined; the activation
    is built only if some rule needs CEL.
    """
    first = -1
    activation: cel.Context | None = None
    append = results.append
    for index, program in enumerate(programs):
        if program is None:
            append(_MATCHED)
        else:
            if activation is None:
                activation = make_activation()
            try:
                value = program.execute(activation)
            except Exception as exc:  # every CEL runtime error means "does not match"
                append(ConditionResult(False, _cel_error_text(exc)))
                continue
            if value is True:
                append(_MATCHED)
            elif value is False:
                append(_NOT_MATCHED)
                continue
            else:
                append(ConditionResult(False, f"expression gave {type(value).__name__}, not bool"))
                continue
        if first < 0:
            first = index
            if not every_rule:
                break
    return first


def _lead_keys(source: str, key_path: str, rule: str) -> frozenset[str] | None:
    keys: set[str] = set()
    whole = False
    for match in _LEAD_USE.finditer(source):
        key = match.group(2)
        if key is None:
            whole = True  # ``lead["x"]`` or ``lead`` passed to a function
            continue
        if key not in CEL_LEAD_KEYS:
            known = ", ".join(sorted(CEL_LEAD_KEYS))
            raise RoutingConfigError(
                key_path, rule, f'unknown lead fact "lead.{key}" (known: {known})'
            )
        keys.add(key)
    return None if whole else frozenset(keys)


def new_activation(lead: dict[str, Any], extension_functions: Iterable[str] = ()) -> cel.Context:
    """A CEL context holding ``lead`` and the extension functions the rules use."""
    context = cel.Context()
    for name in extension_functions:
        context.add_function(name, _EXTENSION_FUNCTIONS[name])
    context.add_variable(LEAD_VARIABLE, lead)
    return context
