"""Tests of sip.auth: RFC known answers, challenge parsing and choice, header building."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.auth import (
    Credentials,
    DigestAlgorithm,
    DigestChallenge,
    DigestResponse,
    build_authorization,
    choose_challenge,
    choose_challenges,
    verify_authorization,
)
from sip.errors import LocalProtocolError, ParseError

# RFC 2617 §3.5 (reused by RFC 3261 §22.4 for SIP).
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC2617_CREDENTIALS = Credentials("Mufasa", "Circle Of Life")
RFC2617_RESPONSE = "6629fae49393a05397450978507c4ef1"

# RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5 (note "of", lower case).
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CREDENTIALS = Credentials("Mufasa", "Circle of Life")
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_RESPONSES = {
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
}


def params_of(header: str) -> dict[str, str]:
    """The raw (still quoted) parameters of a header value we built."""
    assert header.startswith("Digest ")
    result: dict[str, str] = {}
    for part in header.removeprefix("Digest ").split(", "):
        name, _, value = part.partition("=")
        result[name] = value
    return result


def test_rfc2617_known_answer() -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    header = build_authorization(
        challenge,
        RFC2617_CREDENTIALS,
        method="GET",
        uri="/dir/index.html",
        nc=1,
        cnonce="0a4f113b",
    )
    params = params_of(header)
    assert params["response"] == f'"{RFC2617_RESPONSE}"'
    assert params["username"] == '"Mufasa"'
    assert params["realm"] == '"testrealm@host.com"'
    assert params["nonce"] == '"dcd98b7102dd2f0e8b11d0f600bfb0c093"'
    assert params["uri"] == '"/dir/index.html"'
    assert params["cnonce"] == '"0a4f113b"'
    assert params["opaque"] == '"5ccc069c403ebaf9f0171e9517f40e41"'
    # RFC 3261 §25.1: algorithm, qop and nc are tokens, never quoted.
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["algorithm"] == "MD5"


@pytest.mark.parametrize("algorithm", sorted(RFC7616_RESPONSES))
def test_rfc7616_known_answers(algorithm: str) -> None:
    challenge = DigestChallenge.parse(RFC7616_CHALLENGE.format(algorithm=algorithm))
    header = build_authorization(
        challenge,
        RFC7616_CREDENTIALS,
        method="GET",
        uri="/dir/index.html",
        nc=1,
        cnonce=RFC7616_CNONCE,
    )
    params = params_of(header)
    assert params["response"] == f'"{RFC7616_RESPONSES[algorithm]}"'
    assert params["algorithm"] == algorithm
    assert params["opaque"] == '"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'


def test_rfc2069_form_without_qop() -> None:
    # RFC 2617 §3.2.2.1 compatibility form: response = H(HA1:nonce:HA2), no cnonce/nc/qop.
    challenge = DigestChallenge(
        realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"
    )
    header = build_authorization(
        challenge, RFC2617_CREDENTIALS, method="GET", uri="/dir/index.html", nc=1, cnonce=""
    )
    params = params_of(header)
    assert params["response"] == '"670fd8c2df070c60b045671b8b24ff02"'
    assert "qop" not in params
    assert "nc" not in params
    assert "cnonce" not in params


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("algorithm", "h"),
    [("MD5-sess", md5), ("SHA-256-sess", sha256)],
)
def test_session_variants_hash_a1_with_nonce_and_cnonce(algorithm: str, h: object) -> None:
    # Independent computation from the RFC 7616 §3.4.2 formula, on the RFC 7616 inputs.
    assert callable(h)
    challenge = DigestChallenge.parse(RFC7616_CHALLENGE.format(algorithm=algorithm))
    nonce = challenge.nonce
    ha1 = h(h("Mufasa:http-auth@example.org:Circle of Life") + f":{nonce}:{RFC7616_CNONCE}")
    ha2 = h("GET:/dir/index.html")
    expected = h(f"{ha1}:{nonce}:00000001:{RFC7616_CNONCE}:auth:{ha2}")
    header = build_authorization(
        challenge,
        RFC7616_CREDENTIALS,
        method="GET",
        uri="/dir/index.html",
        nc=1,
        cnonce=RFC7616_CNONCE,
    )
    assert params_of(header)["response"] == f'"{expected}"'


def test_auth_int_covers_the_body() -> None:
    challenge = DigestChallenge(realm="biloxi.com", nonce="n", qop=("auth-int",))
    body = b"v=0\r\n"
    header = build_authorization(
        challenge,
        Credentials("bob", "zanzibar"),
        method="INVITE",
        uri="sip:bob@biloxi.com",
        nc=2,
        cnonce="c",
        body=body,
    )
    ha1 = md5("bob:biloxi.com:zanzibar")
    ha2 = md5("INVITE:sip:bob@biloxi.com:" + hashlib.md5(body, usedforsecurity=False).hexdigest())
    params = params_of(header)
    assert params["response"] == f'"{md5(f"{ha1}:n:00000002:c:auth-int:{ha2}")}"'
    assert params["qop"] == "auth-int"
    assert params["nc"] == "00000002"
    assert verify_authorization(
        header, password="zanzibar", method="INVITE", realm="biloxi.com", body=body
    )
    assert not verify_authorization(
        header, password="zanzibar", method="INVITE", realm="biloxi.com", body=b"other"
    )


def test_auth_is_preferred_over_auth_int_and_nc_is_hex() -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    header = build_authorization(
        challenge, RFC2617_CREDENTIALS, method="GET", uri="/", nc=0x1AB, cnonce="x"
    )
    assert params_of(header)["qop"] == "auth"
    assert params_of(header)["nc"] == "000001ab"


@pytest.mark.parametrize("nc", [0, -1, 0x1_0000_0000])
def test_nonce_count_out_of_range_is_our_error(nc: int) -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    with pytest.raises(LocalProtocolError):
        build_authorization(
            challenge, RFC2617_CREDENTIALS, method="GET", uri="/", nc=nc, cnonce="x"
        )


def test_quotes_and_backslashes_are_escaped_and_hashed_unescaped() -> None:
    challenge = DigestChallenge(realm='we "quote"', nonce="n\\1", qop=("auth",))
    credentials = Credentials('al"ice', "pw")
    header = build_authorization(
        challenge, credentials, method="REGISTER", uri="sip:x", nc=1, cnonce="c"
    )
    assert 'username="al\\"ice"' in header
    assert 'realm="we \\"quote\\""' in header
    assert 'nonce="n\\\\1"' in header
    parsed = DigestResponse.parse(header)
    assert (parsed.username, parsed.realm, parsed.nonce) == ('al"ice', 'we "quote"', "n\\1")
    assert verify_authorization(header, password="pw", method="REGISTER", realm='we "quote"')


def test_challenge_parse_reads_every_field() -> None:
    challenge = DigestChallenge.parse(
        'digest  realm="atlanta.com",domain="sip:ss1.carrier.com", qop="auth",\r\n'
        ' nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=TRUE, algorithm=md5-SESS'
    )
    assert challenge == DigestChallenge(
        realm="atlanta.com",
        nonce="f84f1cec41e6cbe5aea9c8e88d359",
        opaque="",
        algorithm=DigestAlgorithm.MD5_SESS,
        qop=("auth",),
        stale=True,
        domain="sip:ss1.carrier.com",
    )
    assert DigestChallenge.parse(challenge.serialize()) == challenge
    assert str(challenge) == challenge.serialize()


def test_challenge_defaults_and_unknown_qop_values_are_dropped() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth,future-thing", x=1')
    assert challenge.algorithm is DigestAlgorithm.MD5
    assert challenge.qop == ("auth",)
    assert challenge.opaque is None
    assert challenge.stale is False


MALFORMED_CHALLENGES = {
    "not digest": 'Basic realm="r"',
    "no realm": 'Digest nonce="n"',
    "no nonce": 'Digest realm="r"',
    "unsupported algorithm": 'Digest realm="r", nonce="n", algorithm=SHA-512-256',
    "AKA": 'Digest realm="r", nonce="n", algorithm=AKAv1-MD5',
    "only unknown qop": 'Digest realm="r", nonce="n", qop="auth-conf"',
    "sess without qop": 'Digest realm="r", nonce="n", algorithm=MD5-sess',
    "bad stale": 'Digest realm="r", nonce="n", stale=maybe',
    "unterminated quote": 'Digest realm="r, nonce="n',
    "missing comma": 'Digest realm="r" nonce="n"',
    "repeated parameter": 'Digest realm="r", realm="s", nonce="n"',
    "no value": 'Digest realm=, nonce="n"',
    "empty": "",
    "scheme only": "Digest",
}


@pytest.mark.parametrize("value", MALFORMED_CHALLENGES.values(), ids=MALFORMED_CHALLENGES.keys())
def test_malformed_or_unsupported_challenges_raise_parse_error(value: str) -> None:
    with pytest.raises(ParseError):
        DigestChallenge.parse(value)


def test_choose_prefers_sha256_over_a_topmost_md5() -> None:
    md5_first = [
        'Digest realm="r", nonce="a", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth"',
    ]
    assert choose_challenge(md5_first).algorithm is DigestAlgorithm.SHA_256
    assert choose_challenge(md5_first[::-1]).nonce == "b"


def test_choose_keeps_the_topmost_among_equals_and_skips_unusable_values() -> None:
    values = [
        'Basic realm="r"',
        'Digest realm="r", nonce="x", algorithm=SHA-512-256',
        "Digest garbage=",
        'Digest realm="r", nonce="first", algorithm=SHA-256',
        'Digest realm="r", nonce="second", algorithm=SHA-256-sess',
        'Digest realm="r", nonce="third"',
    ]
    assert choose_challenge(values).nonce == "first"


def test_choose_challenges_answers_each_realm_once() -> None:
    values = [
        'Digest realm="proxy", nonce="p1"',
        'Digest realm="uas", nonce="u1", algorithm=SHA-256',
        'Digest realm="proxy", nonce="p2", algorithm=SHA-256',
        'Digest realm="uas", nonce="u2"',
    ]
    assert [(c.realm, c.nonce) for c in choose_challenges(values)] == [
        ("proxy", "p2"),
        ("uas", "u1"),
    ]


def test_choose_without_a_usable_challenge_raises() -> None:
    with pytest.raises(ParseError) as info:
        choose_challenge(['Basic realm="r"', 'Digest realm="r", nonce="n", algorithm=SHA-512'])
    assert info.value.status_hint == 401
    with pytest.raises(ParseError):
        choose_challenge([])


def test_verify_checks_every_given_field() -> None:
    challenge = DigestChallenge(
        realm="r", nonce="n", qop=("auth",), algorithm=DigestAlgorithm.SHA_256
    )
    header = build_authorization(
        challenge, Credentials("u", "p"), method="INVITE", uri="sip:a@b", nc=1, cnonce="c"
    )

    def verify(
        password: str = "p",
        method: str = "INVITE",
        realm: str = "r",
        uri: str | None = None,
        nonce: str | None = None,
        username: str | None = None,
    ) -> bool:
        return verify_authorization(
            header,
            password=password,
            method=method,
            realm=realm,
            uri=uri,
            nonce=nonce,
            username=username,
        )

    assert verify(uri="sip:a@b", nonce="n", username="u")
    assert not verify(password="q")
    assert not verify(method="BYE")
    assert not verify(realm="s")
    assert not verify(uri="sip:other@b")
    assert not verify(nonce="stale")
    assert not verify(username="v")


@pytest.mark.parametrize(
    "value",
    [
        "Basic dXNlcjpwdw==",
        'Digest username="u", realm="r", nonce="n", uri="x"',
        'Digest username="u", realm="r", nonce="n", uri="x", response="y", qop=auth',
        'Digest username="u", realm="r", nonce="n", uri="x", response="y", qop=auth, '
        'cnonce="c", nc=1',
        'Digest username="u", realm="r", nonce="n", uri="x", response="y", algorithm=SHA-1',
    ],
)
def test_verify_rejects_malformed_credentials_with_parse_error(value: str) -> None:
    with pytest.raises(ParseError):
        verify_authorization(value, password="p", method="INVITE", realm="r")


@pytest.mark.parametrize("algorithm", [DigestAlgorithm.MD5, DigestAlgorithm.SHA_256])
def test_built_credentials_verify_without_qop(algorithm: DigestAlgorithm) -> None:
    challenge = DigestChallenge(realm="r", nonce="n", algorithm=algorithm)
    header = build_authorization(
        challenge, Credentials("u", "p"), method="BYE", uri="sip:a", nc=1, cnonce=""
    )
    assert verify_authorization(header, password="p", method="BYE", realm="r")
    assert not verify_authorization(header, password="p", method="INVITE", realm="r")


def test_session_algorithm_without_qop_is_refused() -> None:
    challenge = DigestChallenge(realm="r", nonce="n", algorithm=DigestAlgorithm.SHA_256_SESS)
    with pytest.raises(LocalProtocolError):
        build_authorization(
            challenge, Credentials("u", "p"), method="BYE", uri="x", nc=1, cnonce="c"
        )


def test_credentials_repr_hides_the_password() -> None:
    assert "secret" not in repr(Credentials("alice", "secret"))


def test_carriage_return_in_a_value_is_refused() -> None:
    challenge = DigestChallenge(realm="r", nonce="n")
    with pytest.raises(LocalProtocolError):
        build_authorization(
            challenge,
            Credentials("a\r\nX-Injected: 1", "p"),
            method="INVITE",
            uri="u",
            nc=1,
            cnonce="",
        )


_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\u00e9"),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(
    username=_value,
    password=_value,
    realm=_value,
    nonce=_value,
    cnonce=_value.filter(bool),
    algorithm=st.sampled_from(list(DigestAlgorithm)),
    qop=st.sampled_from([("auth",), ("auth-int",), ("auth", "auth-int")]),
    nc=st.integers(min_value=1, max_value=0xFFFFFFFF),
    body=st.binary(max_size=40),
)
def test_built_credentials_verify(
    username: str,
    password: str,
    realm: str,
    nonce: str,
    cnonce: str,
    algorithm: DigestAlgorithm,
    qop: tuple[str, ...],
    nc: int,
    body: bytes,
) -> None:
    challenge = DigestChallenge(realm=realm, nonce=nonce, algorithm=algorithm, qop=qop)
    assert DigestChallenge.parse(challenge.serialize()) == challenge
    header = build_authorization(
        challenge,
        Credentials(username, password),
        method="INVITE",
        uri="sip:bob@127.0.0.1",
        nc=nc,
        cnonce=cnonce,
        body=body,
    )
    assert verify_authorization(
        header, password=password, method="INVITE", realm=realm, nonce=nonce, body=body
    )
    assert not verify_authorization(
        header, password=password + "x", method="INVITE", realm=realm, body=body
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_garbage_challenges_raise_only_parse_error(value: str) -> None:
    with contextlib.suppress(ParseError):
        DigestChallenge.parse(value)
    with contextlib.suppress(ParseError):
        DigestResponse.parse(value)
