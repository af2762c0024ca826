"""The RFC 3261 §25 grammar, compiled once (private).

Each regular expression is built from the ABNF rule quoted in the comment above it, in the manner
of h11's ``_abnf.py``. Linear white space is simpler here than in the RFC because the message
parser unfolds continuation lines first (RFC 3261 §7.3.1: a folded line "can be replaced with a
single SP"), so ``LWS`` below never contains CR or LF.

Nothing in this module does I/O; it is imported by :mod:`sip.uri`, :mod:`sip.headers` and
:mod:`sip.message`.
"""

from __future__ import annotations

import re

# --- basic rules (RFC 3261 §25.1) -------------------------------------------------------------

# alphanum  =  ALPHA / DIGIT
ALPHANUM = r"A-Za-z0-9"

# mark        =  "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
# unreserved  =  alphanum / mark
UNRESERVED = ALPHANUM + r"\-_.!~*'()"

# escaped     =  "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"


def runs(chars: str, *, optional: bool = False) -> str:
    """``1*( [chars] / escaped )`` (``*`` if ``optional``) as runs of plain characters between
    escapes. Possessive, so it never backtracks: every use below is followed by a character
    outside ``chars``. This matches the same text as the RFC's per-character form, much faster."""
    return rf"(?:[{chars}]++|{ESCAPED})" + ("*+" if optional else "++")


# LWS  =  [*WSP CRLF] 1*WSP ; linear whitespace
# SWS  =  [LWS] ; sep whitespace
# (after unfolding, LWS is one or more SP / HTAB). SWS is possessive: white space between two
# separators belongs to the first SWS that can take it, so a run of spaces can be split only one
# way and a failing list cannot backtrack exponentially.
LWS = r"[ \t]+"
SWS = r"[ \t]*+"

# token       =  1*(alphanum / "-" / "." / "!" / "%" / "*"
#                / "_" / "+" / "`" / "'" / "~" )
TOKEN_CHARS = ALPHANUM + r"\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]++"

# word        =  1*(alphanum / "-" / "." / "!" / "%" / "*" /
#                "_" / "+" / "`" / "'" / "~" /
#                "(" / ")" / "<" / ">" /
#                ":" / "\" / DQUOTE /
#                "/" / "[" / "]" / "?" /
#                "{" / "}" )
WORD = rf"[{TOKEN_CHARS}()<>:\\\"/\[\]?{{}}]++"

# quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E
#                   / UTF8-NONASCII
# quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING = r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]++|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*+"'
quoted_pair_re = re.compile(r"\\([\x00-\x09\x0b\x0c\x0e-\x7f])")

# TEXT-UTF8char  =  %x21-7E / UTF8-NONASCII
# header-value   =  *(TEXT-UTF8char / UTF8-CONT / LWS)
# Any other control character in the header section is an error.
forbidden_head_char_re = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# --- SIP and SIPS URIs (RFC 3261 §25.1, §19.1) ---------------------------------------------------

# user             =  1*( unreserved / escaped / user-unreserved )
# user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER = runs(UNRESERVED + "&=+$,;?/")

# password         =  *( unreserved / escaped /
#                     "&" / "=" / "+" / "$" / "," )
PASSWORD = runs(UNRESERVED + "&=+$,", optional=True)

# domainlabel      =  alphanum
#                     / alphanum *( alphanum / "-" ) alphanum
# toplabel         =  ALPHA / ALPHA *( alphanum / "-" ) alphanum
# hostname         =  *( domainlabel "." ) toplabel [ "." ]
# (written as alphanumeric runs joined by hyphen runs, which is the same language without
# backtracking)
DOMAINLABEL = r"[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+"
TOPLABEL = r"[A-Za-z][A-Za-z0-9]*+(?:-++[A-Za-z0-9]++)*+"
HOSTNAME = rf"(?:{DOMAINLABEL}\.)*{TOPLABEL}\.?"

# IPv4address    =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
IPV4ADDRESS = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"

# IPv6reference  =  "[" IPv6address "]"
# IPv6address    =  hexpart [ ":" IPv4address ]
# hexpart        =  hexseq / hexseq "::" [ hexseq ] / "::" [ hexseq ]
# hexseq         =  hex4 *( ":" hex4)
# hex4           =  1*4HEXDIG
HEX4 = r"[0-9A-Fa-f]{1,4}"
HEXSEQ = rf"{HEX4}(?::{HEX4})*"
IPV6ADDRESS = rf"(?:{HEXSEQ}(?:::(?:{HEXSEQ})?)?|::(?:{HEXSEQ})?)(?::{IPV4ADDRESS})?"
IPV6REFERENCE = rf"\[{IPV6ADDRESS}\]"

# host             =  hostname / IPv4address / IPv6reference
HOST = rf"(?:{IPV6REFERENCE}|{IPV4ADDRESS}|{HOSTNAME})"

# port           =  1*DIGIT
# (limited here to 0-65535, leading zeros allowed)
PORT = r"0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"

# paramchar         =  param-unreserved / unreserved / escaped
# param-unreserved  =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
# pname             =  1*paramchar
# pvalue            =  1*paramchar
# other-param       =  pname [ "=" pvalue ]
# uri-parameters    =  *( ";" uri-parameter)
PARAMCHARS = runs(UNRESERVED + r"\[\]/:&+$")
URI_PARAMETERS = rf"(?:;{PARAMCHARS}(?:={PARAMCHARS})?)*"
uri_parameter_re = re.compile(rf";({PARAMCHARS})(?:=({PARAMCHARS}))?")

# headers         =  "?" header *( "&" header )
# header          =  hname "=" hvalue
# hname           =  1*( hnv-unreserved / unreserved / escaped )
# hvalue          =  *( hnv-unreserved / unreserved / escaped )
# hnv-unreserved  =  "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNV = UNRESERVED + r"\[\]/?:+$"
URI_HEADERS = rf"{runs(HNV)}={runs(HNV, optional=True)}(?:&{runs(HNV)}={runs(HNV, optional=True)})*"

# SIP-URI   =  "sip:" [ userinfo ] hostport
#              uri-parameters [ headers ]
# SIPS-URI  =  "sips:" [ userinfo ] hostport
#              uri-parameters [ headers ]
# userinfo  =  ( user / telephone-subscriber ) [ ":" password ] "@"
# hostport  =  host [ ":" port ]
# (the scheme is case-insensitive, RFC 3261 §19.1.4)
SIP_SCHEME = r"[Ss][Ii][Pp][Ss]?"
SIP_URI = (
    rf"{SIP_SCHEME}:(?:{USER}(?::{PASSWORD})?@)?{HOST}(?::{PORT})?"
    rf"{URI_PARAMETERS}(?:\?{URI_HEADERS})?"
)
sip_uri_re = re.compile(
    rf"(?P<scheme>{SIP_SCHEME}):"
    rf"(?:(?P<user>{USER})(?::(?P<password>{PASSWORD}))?@)?"
    rf"(?P<host>{HOST})(?::(?P<port>{PORT}))?"
    rf"(?P<params>{URI_PARAMETERS})"
    rf"(?:\?(?P<headers>{URI_HEADERS}))?"
)

# The same groups for a URI already known to match SIP_URI: user and password are found by the
# "@" (which no other part may contain), so nothing has to be matched twice.
sip_uri_extract_re = re.compile(
    r"(?P<scheme>[^:]*):(?:(?P<user>[^:@]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>\[[^\]]*\]|[^:;?]*)(?::(?P<port>[0-9]*))?"
    r"(?P<params>[^?]*)(?:\?(?P<headers>.*))?",
    re.DOTALL,
)

# --- other URIs ---------------------------------------------------------------------------------

# telephone-uri = "tel:" telephone-subscriber           (RFC 3966 §3)
# telephone-subscriber = global-number / local-number
# global-number-digits = "+" *phonedigit DIGIT *phonedigit
# local-number-digits  = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex
# phonedigit-hex       = HEXDIG / "*" / "#" / [ visual-separator ]
# visual-separator     = "-" / "." / "(" / ")"
# par                  = parameter / extension / isdn-subaddress
# parameter            = ";" pname ["=" pvalue ]
TEL_SCHEME = r"[Tt][Ee][Ll]"
# (written so that the first digit is the first non-separator, which keeps matching linear)
TEL_NUMBER = r"\+?[\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*"
TEL_URI = rf"{TEL_SCHEME}:{TEL_NUMBER}{URI_PARAMETERS}"
tel_uri_re = re.compile(rf"{TEL_SCHEME}:(?P<number>{TEL_NUMBER})(?P<params>{URI_PARAMETERS})")

# absoluteURI    =  scheme ":" ( hier-part / opaque-part )
# scheme         =  ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
# uric           =  reserved / unreserved / escaped
# reserved       =  ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
# (hier-part and opaque-part are both sequences of uric; the sip, sips and tel schemes must
# match their own grammar above, never this one)
NOT_SIP_OR_TEL = rf"(?!{SIP_SCHEME}:|{TEL_SCHEME}:)"
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
URIC = runs(UNRESERVED + ";/?:@&=+$,")
ABSOLUTE_URI = rf"{NOT_SIP_OR_TEL}{SCHEME}:{URIC}"
absolute_uri_re = re.compile(rf"{NOT_SIP_OR_TEL}(?P<scheme>{SCHEME}):(?P<rest>{URIC})")

# addr-spec      =  SIP-URI / SIPS-URI / absoluteURI
ADDR_SPEC = rf"(?:{SIP_URI}|{TEL_URI}|{ABSOLUTE_URI})"

# The same URIs written without angle brackets: RFC 3261 §20 -- "If the URI contains a comma,
# question mark or semicolon, the URI MUST be enclosed in angle brackets", so a bare addr-spec
# has no parameters, no headers and none of those characters in its user part.
BARE_USER = runs(UNRESERVED + "&=+$/")
BARE_PASSWORD = runs(UNRESERVED + "&=+$", optional=True)
BARE_ADDR_SPEC = (
    rf"(?:{SIP_SCHEME}:(?:{BARE_USER}(?::{BARE_PASSWORD})?@)?{HOST}(?::{PORT})?"
    rf"|{TEL_SCHEME}:{TEL_NUMBER}"
    rf"|{NOT_SIP_OR_TEL}{SCHEME}:{runs(UNRESERVED + '/:@&=+$')})"
)

# --- header field pieces (RFC 3261 §25.1) -------------------------------------------------------

# header-name       =  token
# extension-header  =  header-name HCOLON header-value
# HCOLON  =  *( SP / HTAB ) ":" SWS
header_name_re = re.compile(TOKEN)

# SEMI    =  SWS ";" SWS ; semicolon
# EQUAL   =  SWS "=" SWS ; equal
# COMMA   =  SWS "," SWS ; comma
# generic-param  =  token [ EQUAL gen-value ]
# gen-value      =  token / host / quoted-string
GEN_VALUE = rf"(?:{TOKEN}|{IPV6REFERENCE}|{QUOTED_STRING})"
GENERIC_PARAMS = rf"(?:{SWS};{SWS}{TOKEN}(?:{SWS}={SWS}{GEN_VALUE})?)*"
COMMA = rf"{SWS},{SWS}"
comma_re = re.compile(COMMA)

# Faster extraction from values already validated by the whole-value patterns below: the
# grammar has been checked, so separators alone delimit the parts.
# (a parameter value is a quoted string or a run without white space, ";" or ",")
param_extract_re = re.compile(
    r'[ \t]*+;[ \t]*+([^ \t=;,]++)(?:[ \t]*+=[ \t]*+("(?:[^"\\]|\\.)*+"|[^ \t;,]++))?',
    re.DOTALL,
)
via_extract_re = re.compile(
    r"[ \t]*+([^ \t/]++)[ \t]*+/[ \t]*+([^ \t/]++)[ \t]*+/[ \t]*+([^ \t]++)[ \t]++"
    r"(\[[^\]]*+\]|[^ \t:;,]++)(?:[ \t]*+:[ \t]*+([0-9]++))?"
)
name_addr_extract_re = re.compile(
    r'[ \t]*+(?:(?:("(?:[^"\\]|\\.)*+")|([^<>",;:@ \t]++(?:[ \t]++[^<>",;:@ \t]++)*+))?'
    r"[ \t]*+<([^>]*+)>|([^ \t;,]++))",
    re.DOTALL,
)

# Via               =  ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm)
# via-parm          =  sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol     =  protocol-name SLASH protocol-version
#                      SLASH transport
# protocol-name     =  "SIP" / token
# protocol-version  =  token
# transport         =  "UDP" / "TCP" / "TLS" / "SCTP"
#                      / other-transport
# sent-by           =  host [ COLON port ]
# SLASH   =  SWS "/" SWS ; slash
# COLON   =  SWS ":" SWS ; colon


SENT_PROTOCOL_AND_BY = (
    rf"{SWS}{TOKEN}{SWS}/{SWS}{TOKEN}{SWS}/{SWS}{TOKEN}{LWS}{HOST}(?:{SWS}:{SWS}{PORT})?"
)

# via-params    =  via-ttl / via-maddr
#                  / via-received / via-branch
#                  / via-extension
# via-ttl       =  "ttl" EQUAL ttl
# ttl           =  1*3DIGIT ; 0 to 255
# via-maddr     =  "maddr" EQUAL host
# via-received  =  "received" EQUAL (IPv4address / IPv6address)
# via-branch    =  "branch" EQUAL token
# via-extension =  generic-param
# response-port =  "rport" [EQUAL 1*DIGIT]                      (RFC 3581)
# (received= with an IPv6 reference is accepted too, as deployed stacks write it)
_NOT_TOKEN_CHAR = rf"(?![{TOKEN_CHARS}])"
_EQ = rf"{SWS}={SWS}"
VIA_PARAM = (
    rf"{SWS};{SWS}(?:"
    # (the most frequent first)
    rf"(?i:branch){_EQ}{TOKEN}"
    rf"|(?i:rport)(?:{_EQ}{PORT})?{_NOT_TOKEN_CHAR}"
    rf"|(?i:received){_EQ}(?:{IPV4ADDRESS}|{IPV6ADDRESS}|{IPV6REFERENCE}){_NOT_TOKEN_CHAR}"
    rf"|(?i:maddr){_EQ}{HOST}{_NOT_TOKEN_CHAR}"
    rf"|(?i:ttl){_EQ}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9]){_NOT_TOKEN_CHAR}"
    rf"|(?!(?i:ttl|maddr|received|branch|rport){_NOT_TOKEN_CHAR}){TOKEN}(?:{_EQ}{GEN_VALUE})?"
    rf")"
)
VIA_PARM = rf"{SENT_PROTOCOL_AND_BY}(?:{VIA_PARAM})*"
via_value_re = re.compile(rf"{VIA_PARM}(?:{COMMA}{VIA_PARM})*{SWS}")

# name-addr      =  [ display-name ] LAQUOT addr-spec RAQUOT
# display-name   =  *(token LWS)/ quoted-string
# LAQUOT  =  SWS "<"; left angle quote
# RAQUOT  =  ">" SWS ; right angle quote
# from-spec      =  ( name-addr / addr-spec ) *( SEMI from-param )
# contact-param  =  (name-addr / addr-spec) *(SEMI contact-params)
# rec-route      =  name-addr *( SEMI rr-param )
# (a run of tokens directly followed by "<" is accepted as a display name, as most stacks do)
DISPLAY_TOKENS = rf"{TOKEN}(?:{LWS}{TOKEN})*"
NAME_ADDR_ITEM = (
    rf"{SWS}(?:(?:{QUOTED_STRING}|{DISPLAY_TOKENS})?{SWS}<{ADDR_SPEC}>|{BARE_ADDR_SPEC})"
    rf"{GENERIC_PARAMS}"
)
name_addr_value_re = re.compile(rf"{NAME_ADDR_ITEM}{SWS}")
name_addr_list_re = re.compile(rf"{NAME_ADDR_ITEM}(?:{COMMA}{NAME_ADDR_ITEM})*{SWS}")
# c-p-q    =  "q" EQUAL qvalue
# qvalue   =  ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
# c-p-expires  =  "expires" EQUAL delta-seconds
qvalue_re = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
contact_special_param_re = re.compile(rf";{SWS}(?:q|expires){SWS}=", re.IGNORECASE)

# CSeq  =  "CSeq" HCOLON 1*DIGIT LWS Method
# Method            =  INVITEm / ACKm / OPTIONSm / BYEm
#                      / CANCELm / REGISTERm
#                      / extension-method
# extension-method  =  token
cseq_re = re.compile(rf"([0-9]+){LWS}({TOKEN})")
method_re = re.compile(TOKEN)

# Call-ID  =  ( "Call-ID" / "i" ) HCOLON callid
# callid   =  word [ "@" word ]
call_id_re = re.compile(rf"{WORD}(?:@{WORD})?")

# Max-Forwards  =  "Max-Forwards" HCOLON 1*DIGIT
# Content-Length  =  ( "Content-Length" / "l" ) HCOLON 1*DIGIT
# Expires     =  "Expires" HCOLON delta-seconds
# Min-Expires  =  "Min-Expires" HCOLON delta-seconds
# delta-seconds      =  1*DIGIT
digits_re = re.compile(r"[0-9]+")
# (Max-Forwards: RFC 3261 §20.22 "an integer in the range 0-255"; leading zeros allowed)
max_forwards_re = re.compile(r"0*(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])")

# Reason            =  "Reason" HCOLON reason-value *(COMMA reason-value)   (RFC 3326 §2)
# reason-value      =  protocol *(SEMI reason-params)
# protocol          =  "SIP" / "Q.850" / token
# reason-params     =  protocol-cause / reason-text / reason-extension
# protocol-cause    =  "cause" EQUAL cause
# cause             =  1*DIGIT
# reason-text       =  "text" EQUAL quoted-string
# reason-extension  =  generic-param
# (one reason-value; the list is split on top-level commas first)
reason_value_re = re.compile(rf"{SWS}({TOKEN})({GENERIC_PARAMS}){SWS}")

# Call-Info   =  "Call-Info" HCOLON info *(COMMA info)                       (RFC 3261 §20.9)
# info        =  LAQUOT absoluteURI RAQUOT *( SEMI info-param)
# info-param  =  ( "purpose" EQUAL ( "icon" / "info" / "card" / token ) ) / generic-param
# (absoluteURI here includes http(s), sip and sips URIs, as any uric run after a scheme)
call_info_value_re = re.compile(rf"{SWS}<({SCHEME}:{URIC})>({GENERIC_PARAMS}){SWS}")

# Retry-After  =  "Retry-After" HCOLON delta-seconds
#                 [ comment ] *( SEMI retry-param )
# comment  =  LPAREN *(ctext / quoted-pair / comment) RPAREN
# (one level of comment, with quoted pairs, is accepted)
retry_after_re = re.compile(rf"([0-9]+)(?:{SWS}\((?:[^()\\]|\\.)*\))?{GENERIC_PARAMS}")

# Date          =  "Date" HCOLON SIP-date
# SIP-date      =  rfc1123-date
# rfc1123-date  =  wkday "," SP date1 SP time SP "GMT"
# date1         =  2DIGIT SP month SP 4DIGIT
# time          =  2DIGIT ":" 2DIGIT ":" 2DIGIT
# wkday  =  "Mon" / "Tue" / "Wed" / "Thu" / "Fri" / "Sat" / "Sun"
# month  =  "Jan" / "Feb" / "Mar" / "Apr" / "May" / "Jun"
#           / "Jul" / "Aug" / "Sep" / "Oct" / "Nov" / "Dec"
sip_date_re = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)

# Warning        =  "Warning" HCOLON warning-value *(COMMA warning-value)
# warning-value  =  warn-code SP warn-agent SP warn-text
# warn-code      =  3DIGIT
# warn-agent     =  hostport / pseudonym
# warn-text      =  quoted-string
# pseudonym      =  token
# (host and pseudonym overlap; the atomic group keeps the first reading that reaches the SP, so a
# long list cannot backtrack through every combination)
WARNING_VALUE = rf"[0-9]{{3}} (?>(?:{HOST}(?::{PORT})?|{TOKEN}) ){QUOTED_STRING}"
warning_re = re.compile(rf"{WARNING_VALUE}(?:{COMMA}{WARNING_VALUE})*")

# Content-Type     =  ( "Content-Type" / "c" ) HCOLON media-type
# media-type       =  m-type SLASH m-subtype *(SEMI m-parameter)
# m-type           =  discrete-type / composite-type / extension-token (token)
# m-subtype        =  extension-token / iana-token (token)
# m-parameter      =  m-attribute EQUAL m-value
# m-value          =  token / quoted-string
media_type_re = re.compile(
    rf"{TOKEN}{SWS}/{SWS}{TOKEN}(?:{SWS};{SWS}{TOKEN}{_EQ}(?:{TOKEN}|{QUOTED_STRING}))*"
)

# challenge        =  ("Digest" LWS digest-cln *(COMMA digest-cln))
#                     / other-challenge
# other-challenge  =  auth-scheme LWS auth-param
#                     *(COMMA auth-param)
# auth-param       =  auth-param-name EQUAL
#                     ( token / quoted-string )
auth_scheme_re = re.compile(rf"{SWS}({TOKEN})(?:{LWS}|$)")
auth_param_re = re.compile(rf"{SWS}({TOKEN}){_EQ}({TOKEN}|{QUOTED_STRING}){SWS}")

# Request-Line   =  Method SP Request-URI SP SIP-Version CRLF
# Status-Line     =  SIP-Version SP Status-Code SP Reason-Phrase CRLF
# SIP-Version    =  "SIP" "/" 1*DIGIT "." 1*DIGIT
# Status-Code     =  Informational / ... / extension-code
# extension-code  =  3DIGIT
# Reason-Phrase   =  *(reserved / unreserved / escaped
#                    / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
sip_version_re = re.compile(r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+")
status_code_re = re.compile(r"[1-6][0-9]{2}")

# A header line whose control characters all sit in quoted-pairs inside quoted strings (the
# only place RFC 3261 allows them: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)).
line_with_quoted_controls_re = re.compile(rf'(?:[^"\x00-\x08\x0a-\x1f\x7f]++|{QUOTED_STRING})*+')

# Content-Length, found in raw bytes by the stream framer before the head is parsed.
stream_content_length_re = re.compile(
    rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*\r\n", re.IGNORECASE
)
