"""SIP, SIPS, tel and other URIs (RFC 3261 §19.1, §25.1; RFC 3966).

URIs are frozen values. Every textual part is kept exactly as received (escapes included), so
that ``str(parse_uri(text)) == text`` for any valid URI and a message re-serialises byte for
byte. Comparison by RFC 3261 §19.1.4 rules (unescaping, case folding) is a separate question and
is not what ``==`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from . import _abnf
from .errors import ParseError

__all__ = [
    "URI",
    "AbsoluteURI",
    "Params",
    "SipURI",
    "TelURI",
    "format_params",
    "param_lookup",
    "parse_uri",
    "with_param",
    "without_param",
]

#: Parameters in order of appearance; ``None`` marks a parameter written without ``=value``.
Params = tuple[tuple[str, str | None], ...]


def param_lookup(params: Params, name: str) -> str | None:
    """Value of the first parameter called ``name`` (case-insensitive); ``None`` when absent or
    written without a value (``has_param`` tells those apart)."""
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return value
    return None


def _has(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(key.lower() == lname for key, _ in params)


def with_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value``: replaced in place if present, else appended."""
    lname = name.lower()
    out: list[tuple[str, str | None]] = []
    replaced = False
    for key, old in params:
        if key.lower() == lname:
            if not replaced:
                out.append((key, value))
                replaced = True
            continue
        out.append((key, old))
    if not replaced:
        out.append((name, value))
    return tuple(out)


def without_param(params: Params, name: str) -> Params:
    """``params`` without any parameter called ``name`` (case-insensitive)."""
    lname = name.lower()
    return tuple((key, value) for key, value in params if key.lower() != lname)


def format_params(params: Params) -> str:
    """``;name=value;flag`` text for a parameter tuple."""
    return "".join(f";{key}" if value is None else f";{key}={value}" for key, value in params)


def _split_uri_params(text: str) -> Params:
    if not text:
        return ()
    # findall gives "" for a missing value; a present value is never empty (pvalue = 1*paramchar)
    return tuple([(name, value or None) for name, value in _abnf.uri_parameter_re.findall(text)])


@dataclass(frozen=True, slots=True)
class SipURI:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1).

    ``host`` keeps an IPv6 reference with its brackets (``"[::1]"``); ``user``, ``password``,
    parameter and header texts are kept escaped, as received.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    # The exact text this URI was parsed from; dataclasses.replace() resets it (init=False).
    _text: str = field(default="", init=False, repr=False, compare=False)

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive); ``None`` if absent or valueless."""
        return param_lookup(self.params, name)

    def has_param(self, name: str) -> bool:
        """Whether URI parameter ``name`` is present (with or without a value)."""
        return _has(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> SipURI:
        """A copy with parameter ``name`` set (``None``: a flag such as ``lr``)."""
        return replace(self, params=with_param(self.params, name, value))

    def without_param(self, name: str) -> SipURI:
        """A copy without parameter ``name``."""
        return replace(self, params=without_param(self.params, name))

    @property
    def host_port(self) -> tuple[str, int | None]:
        """``(host, port)``; the port is ``None`` when the URI does not give one."""
        return self.host, self.port

    @property
    def transport(self) -> str | None:
        """The ``transport`` URI parameter, lower-cased, or ``None``."""
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def is_secure(self) -> bool:
        """Whether the scheme is ``sips``."""
        return self.scheme.lower() == "sips"

    def __str__(self) -> str:
        if self._text:
            return self._text
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(format_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(f"{name}={value}" for name, value in self.headers))
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class TelURI:
    """A ``tel:`` URI (RFC 3966): the number as written (``+1-212-555-0101``) and parameters."""

    number: str
    params: Params = ()

    def param(self, name: str) -> str | None:
        """Value of parameter ``name`` (case-insensitive), or ``None``."""
        return param_lookup(self.params, name)

    def __str__(self) -> str:
        return f"tel:{self.number}{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """Any other URI (``http:``, ``urn:``, ``mailto:`` …): the scheme and the text after ``:``."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


URI = SipURI | TelURI | AbsoluteURI


def _parse_sip_uri(text: str, validated: bool) -> SipURI:
    m = (_abnf.sip_uri_extract_re.match if validated else _abnf.sip_uri_re.fullmatch)(text)
    if m is None:
        raise ParseError("malformed SIP URI")
    scheme, user, password, host, port_text, params_text, headers_text = m.groups()
    # the grammar limits the port to 0-65535 but allows leading zeros
    port = int(port_text.lstrip("0") or "0") if port_text is not None else None
    headers: tuple[tuple[str, str], ...] = ()
    if headers_text:
        pairs = []
        for item in headers_text.split("&"):
            name, _, value = item.partition("=")
            pairs.append((name, value))
        headers = tuple(pairs)
    uri = SipURI(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_split_uri_params(params_text),
        headers=headers,
    )
    object.__setattr__(uri, "_text", text)
    return uri


def parse_uri(text: str, *, validated: bool = False) -> URI:
    """Parse a URI as found in a Request-Line or inside ``<...>``.

    Returns a :class:`SipURI` for ``sip:``/``sips:``, a :class:`TelURI` for ``tel:`` and an
    :class:`AbsoluteURI` for any other scheme. Raises :class:`ParseError` when the text is not
    a URI (white space, angle brackets, bad escapes, a port above 65535 …). ``validated``: the
    text is known to match the grammar already (inside a header the parser checked), so only
    its parts are extracted.
    """
    colon = text.find(":")
    if colon <= 0:
        raise ParseError("not a URI")
    scheme = text[:colon].lower()
    if scheme in ("sip", "sips"):
        return _parse_sip_uri(text, validated)
    if scheme == "tel":
        m = _abnf.tel_uri_re.fullmatch(text)
        if m is None:
            raise ParseError("malformed tel URI")
        return TelURI(number=m.group("number"), params=_split_uri_params(m.group("params")))
    m = _abnf.absolute_uri_re.fullmatch(text)
    if m is None:
        raise ParseError("malformed URI")
    return AbsoluteURI(scheme=m.group("scheme"), rest=m.group("rest"))
