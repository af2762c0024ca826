"""Digest authentication for SIP: RFC 3261 §22 with the algorithms of RFC 8760.

What a UAC needs to answer a 401/407 (parse the challenges, choose one, build the
``Authorization`` / ``Proxy-Authorization`` value), and what a test UAS needs to check one.
Computations follow RFC 7616 §3.4 (which RFC 8760 adopts for SIP)::

    A1       = unq(username) ":" unq(realm) ":" passwd
    A1 (sess)= H(unq(username) ":" unq(realm) ":" passwd) ":" unq(nonce) ":" unq(cnonce)
    A2       = Method ":" request-uri                         (qop absent or "auth")
    A2 (int) = Method ":" request-uri ":" H(entity-body)       (qop "auth-int")
    response = KD(H(A1), unq(nonce) ":" nc ":" unq(cnonce) ":" unq(qop) ":" H(A2))
    response = KD(H(A1), unq(nonce) ":" H(A2))                  (no qop: RFC 2069 style)
    KD(secret, data) = H(secret ":" data)

Pure: no I/O, no clock, no randomness; the caller supplies the cnonce and the nonce count.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass

from sip.errors import LocalProtocolError, ParseError

__all__ = [
    "Credentials",
    "DigestAlgorithm",
    "DigestChallenge",
    "DigestResponse",
    "build_authorization",
    "choose_challenge",
    "choose_challenges",
    "verify_authorization",
]


class DigestAlgorithm(enum.StrEnum):
    """The digest algorithms this module computes (RFC 8760 §2.1; SHA-512-256 is not offered
    by any peer we meet and is refused rather than guessed at)."""

    #: RFC 3261's only algorithm; the default when a challenge names none.
    MD5 = "MD5"
    #: MD5 with the session variant of A1.
    MD5_SESS = "MD5-sess"
    #: RFC 8760's mandatory-to-implement algorithm.
    SHA_256 = "SHA-256"
    #: SHA-256 with the session variant of A1.
    SHA_256_SESS = "SHA-256-sess"

    @property
    def is_session(self) -> bool:
        """Whether A1 is the ``-sess`` variant."""
        return self.value.endswith("-sess")

    def hexdigest(self, data: str) -> str:
        """H(data) as lowercase hex (RFC 7616 §3.4.1)."""
        name = "md5" if self in (DigestAlgorithm.MD5, DigestAlgorithm.MD5_SESS) else "sha256"
        return hashlib.new(name, data.encode("utf-8"), usedforsecurity=False).hexdigest()

    def hexdigest_bytes(self, data: bytes) -> str:
        """H(body) for qop=auth-int."""
        name = "md5" if self in (DigestAlgorithm.MD5, DigestAlgorithm.MD5_SESS) else "sha256"
        return hashlib.new(name, data, usedforsecurity=False).hexdigest()


_ALGORITHMS = {a.value.lower(): a for a in DigestAlgorithm}

# RFC 8760 §2.4: the UAC "SHOULD use the topmost header field that it supports, unless a local
# policy dictates otherwise". Our local policy ranks by strength first, because §3 names the
# threat that ordering alone leaves open: an on-path attacker can reorder unprotected challenges
# to put MD5 on top (a downgrade). Among equally strong challenges the topmost still wins.
_STRENGTH = {
    DigestAlgorithm.SHA_256: 2,
    DigestAlgorithm.SHA_256_SESS: 2,
    DigestAlgorithm.MD5: 1,
    DigestAlgorithm.MD5_SESS: 1,
}

_SUPPORTED_QOP = ("auth", "auth-int")
_MAX_NONCE_COUNT = 0xFFFFFFFF

# RFC 3261 §25.1:
#   token       = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
#   LWS         = [*WSP CRLF] 1*WSP ; SWS = [LWS]
#   quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
#   qdtext      = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
#   quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
# RFC 3261 §25.1 (auth): auth-param = auth-param-name EQUAL ( token / quoted-string )
#   EQUAL = SWS "=" SWS ; COMMA = SWS "," SWS
_TCHAR_RUN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_SWS = r"(?:[ \t]*(?:\r\n)?[ \t]+|[ \t]*)"
_SCHEME = re.compile(rf"{_SWS}({_TCHAR_RUN})(?:[ \t]*(?:\r\n)?[ \t]+|$)")
_PARAM = re.compile(
    rf"{_SWS}({_TCHAR_RUN}){_SWS}={_SWS}"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\x00-\x09\x0b\x0c\x0e-\x7f]|\r\n[ \t])*)"'
    rf"|({_TCHAR_RUN})){_SWS}"
)
_COMMA = re.compile(rf"{_SWS},")
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_LHEX8 = re.compile(r"[0-9a-fA-F]{8}")


def _parse_auth_params(value: str, *, what: str) -> tuple[str, dict[str, str]]:
    """``scheme`` and its parameters (names lowercased, quotes and escapes removed).

    Empty list elements (``a=1,,b=2``) are tolerated, as RFC 9110 §5.6.1 asks recipients to.
    A repeated parameter is an error: which one would the sender have meant?
    """
    scheme_match = _SCHEME.match(value)
    if scheme_match is None:
        raise ParseError(f"malformed {what}: no scheme")
    scheme = scheme_match.group(1)
    params: dict[str, str] = {}
    pos = scheme_match.end()
    expect_param = True
    while pos < len(value):
        if value[pos:].strip(" \t\r\n") == "":
            break
        comma = _COMMA.match(value, pos)
        if comma is not None:
            pos = comma.end()
            expect_param = True
            continue
        if not expect_param:
            raise ParseError(f"malformed {what}: ',' expected between parameters")
        match = _PARAM.match(value, pos)
        if match is None:
            raise ParseError(f"malformed {what} parameter")
        name = match.group(1).lower()
        quoted = match.group(2)
        raw = _UNESCAPE.sub(r"\1", quoted.replace("\r\n", "")) if quoted is not None else None
        text = raw if raw is not None else match.group(3)
        if name in params:
            raise ParseError(f"malformed {what}: parameter {name!r} repeated")
        params[name] = text
        pos = match.end()
        expect_param = False
    return scheme, params


def _quote(value: str) -> str:
    # quoted-pair lets '"' and '\' through; CR, LF and NUL cannot be carried at all.
    if any(c in value for c in "\r\n\x00"):
        raise LocalProtocolError("a digest parameter cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _algorithm(text: str | None) -> DigestAlgorithm:
    if text is None:
        return DigestAlgorithm.MD5  # RFC 3261 §22.4 / RFC 7616 §3.3: absent means MD5
    algorithm = _ALGORITHMS.get(text.lower())
    if algorithm is None:
        raise ParseError(f"unsupported digest algorithm {text!r}")
    return algorithm


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One ``WWW-Authenticate`` / ``Proxy-Authenticate`` Digest challenge."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    #: Offered qop values, lowercased ("auth", "auth-int"); empty for an RFC 2069 challenge.
    qop: tuple[str, ...] = ()
    stale: bool = False
    domain: str | None = None
    scheme: str = "Digest"

    @classmethod
    def parse(cls, header_value: str) -> DigestChallenge:
        """Parse a challenge; raise :class:`ParseError` when it is malformed, not Digest, or
        asks for something we cannot compute (another algorithm, only unknown qop values)."""
        scheme, params = _parse_auth_params(header_value, what="challenge")
        if scheme.lower() != "digest":
            raise ParseError(f"unsupported authentication scheme {scheme!r}")
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None or nonce is None:
            raise ParseError("digest challenge without realm or nonce")
        qop: tuple[str, ...] = ()
        if "qop" in params:
            offered = tuple(
                q.strip().lower() for q in params["qop"].split(",") if q.strip(" \t\r\n")
            )
            qop = tuple(q for q in offered if q in _SUPPORTED_QOP)
            if not qop:
                raise ParseError(f"digest challenge offers no supported qop: {params['qop']!r}")
        algorithm = _algorithm(params.get("algorithm"))
        if algorithm.is_session and not qop:
            # A -sess A1 needs a cnonce, and RFC 2617 §3.2.2 forbids sending one without qop.
            raise ParseError(f"digest challenge with {algorithm} but no qop")
        stale_text = params.get("stale", "false").lower()
        if stale_text not in ("true", "false"):
            raise ParseError("digest challenge stale is neither true nor false")
        return cls(
            realm=realm,
            nonce=nonce,
            opaque=params.get("opaque"),
            algorithm=algorithm,
            qop=qop,
            stale=stale_text == "true",
            domain=params.get("domain"),
        )

    def serialize(self) -> str:
        """The header value a UAS sends (RFC 3261 §22.1 / RFC 8760 §2.3)."""
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=TRUE")
        parts.append(f"algorithm={self.algorithm.value}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return f"{self.scheme} " + ", ".join(parts)

    def __str__(self) -> str:
        return self.serialize()


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password for one realm (or for any realm, as the caller decides)."""

    username: str
    password: str

    def __repr__(self) -> str:
        # Keep the password out of logs and tracebacks.
        return f"Credentials(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class DigestResponse:
    """The parameters of a received ``Authorization`` / ``Proxy-Authorization`` value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: str | None = None

    @classmethod
    def parse(cls, header_value: str) -> DigestResponse:
        """Parse credentials; raise :class:`ParseError` when malformed or not Digest."""
        scheme, params = _parse_auth_params(header_value, what="credentials")
        if scheme.lower() != "digest":
            raise ParseError(f"unsupported authentication scheme {scheme!r}")
        missing = [n for n in ("username", "realm", "nonce", "uri", "response") if n not in params]
        if missing:
            raise ParseError(f"digest credentials without {', '.join(missing)}")
        qop = params.get("qop")
        if qop is not None:
            qop = qop.lower()
            if qop not in _SUPPORTED_QOP:
                raise ParseError(f"unsupported qop {qop!r}")
            # RFC 3261 §22.4: with qop, cnonce and nc MUST be present (nc is 8LHEX).
            nc = params.get("nc")
            if "cnonce" not in params or nc is None or not _LHEX8.fullmatch(nc):
                raise ParseError("digest credentials with qop need cnonce and an 8-hex nc")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=_algorithm(params.get("algorithm")),
            cnonce=params.get("cnonce"),
            opaque=params.get("opaque"),
            qop=qop,
            nc=params.get("nc"),
        )


def choose_challenges(values: list[str]) -> list[DigestChallenge]:
    """The challenge to answer for each realm, in the order realms first appear.

    RFC 3261 §22.3: a UAC answering several realms (a proxy's and the UAS's) includes one
    credential per realm. Within a realm the strongest supported algorithm wins, ties going to
    the topmost field (see the note on RFC 8760 §2.4 above). Values that are not usable Digest
    challenges (other schemes, SHA-512-256, malformed) are skipped.
    """
    best: dict[str, DigestChallenge] = {}
    for value in values:
        try:
            challenge = DigestChallenge.parse(value)
        except ParseError:
            continue
        current = best.get(challenge.realm)
        if current is None or _STRENGTH[challenge.algorithm] > _STRENGTH[current.algorithm]:
            best[challenge.realm] = challenge
    return list(best.values())


def choose_challenge(values: list[str]) -> DigestChallenge:
    """The single best challenge among ``values`` (every realm considered together).

    Raises :class:`ParseError` (status hint 401) when none of them can be answered.
    """
    candidates = choose_challenges(values)
    if not candidates:
        raise ParseError("no supported digest challenge", status_hint=401)
    return max(candidates, key=lambda c: _STRENGTH[c.algorithm])


def _response_digest(
    algorithm: DigestAlgorithm,
    *,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str,
    cnonce: str,
    body: bytes,
) -> str:
    h = algorithm.hexdigest
    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.is_session:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 = f"{a2}:{algorithm.hexdigest_bytes(body)}"
    ha2 = h(a2)
    if qop is None:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def build_authorization(
    challenge: DigestChallenge,
    credentials: Credentials,
    *,
    method: str,
    uri: str,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """The ``Authorization`` (for a 401) or ``Proxy-Authorization`` (for a 407) value.

    ``uri`` is the Request-URI exactly as sent; ``nc`` counts the requests made with this
    nonce (1 for the first); ``cnonce`` is an opaque string the caller generated (the core has
    no randomness). qop=auth is used when offered, else qop=auth-int (which covers ``body``),
    else the RFC 2069 form without qop. Following RFC 3261 §25.1, ``algorithm``, ``qop`` and
    ``nc`` are written as tokens, everything else as quoted strings.
    """
    if not 1 <= nc <= _MAX_NONCE_COUNT:
        raise LocalProtocolError(f"nonce count {nc} outside 1..{_MAX_NONCE_COUNT:#x}")
    qop: str | None = None
    if "auth" in challenge.qop:
        qop = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    if qop is None and challenge.algorithm.is_session:
        raise LocalProtocolError(f"{challenge.algorithm} cannot be answered without qop")
    if qop is not None and not cnonce:
        raise LocalProtocolError("a cnonce is required when the challenge offers qop")
    nc_text = f"{nc:08x}"
    response = _response_digest(
        challenge.algorithm,
        username=credentials.username,
        realm=challenge.realm,
        password=credentials.password,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f"username={_quote(credentials.username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm.value}",
    ]
    if qop is not None:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def verify_authorization(
    header_value: str,
    *,
    password: str,
    method: str,
    realm: str,
    uri: str | None = None,
    nonce: str | None = None,
    username: str | None = None,
    body: bytes = b"",
) -> bool:
    """Whether ``header_value`` proves knowledge of ``password`` for this request.

    ``realm`` must match; ``uri``, ``nonce`` and ``username``, when given, must match too (a
    UAS that issued the nonce should pass it). Raises :class:`ParseError` when the value is not
    well-formed Digest credentials (the UAS answers 400); returns False for wrong credentials.
    """
    parsed = DigestResponse.parse(header_value)
    if parsed.realm != realm:
        return False
    if uri is not None and parsed.uri != uri:
        return False
    if nonce is not None and parsed.nonce != nonce:
        return False
    if username is not None and parsed.username != username:
        return False
    expected = _response_digest(
        parsed.algorithm,
        username=parsed.username,
        realm=parsed.realm,
        password=password,
        nonce=parsed.nonce,
        method=method,
        uri=parsed.uri,
        qop=parsed.qop,
        nc=parsed.nc or "",
        cnonce=parsed.cnonce or "",
        body=body,
    )
    return hmac.compare_digest(expected, parsed.response.lower())
