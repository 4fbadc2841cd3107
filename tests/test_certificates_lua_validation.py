"""The certificate store's checks (lua/ingressctl/certificates.lua) against translate's: on
generated input, a host name is accepted by the store exactly when translate's host check accepts
it in the lower-case form the controller sends, and a certificate name exactly when it is a content
hash's 32 hex digits; and OpenSSL in nginx refuses exactly the certificates translate's checker
refuses (RSA 1024, P-192, a 1024-bit CA, a SHA-1 signature) at the default ciphers' security level,
and takes the strong ones. Each case runs in a real nginx worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingressctl.config import Certificate, GlobalOptions
from ingressctl.translate import validate
from ingressctl.translate.tls import BadCertificate, certificate_from_pem
from ingressctl.translate.validate import Invalid
from tests.harness import lua_nginx, request
from tests.test_certificates import ACCEPTED, REFUSED

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAME = "0123456789abcdef0123456789abcdef"

CHECK = """
local cjson = require("cjson.safe")
local certificates = require("ingressctl.certificates")
ngx.req.read_body()
local case = cjson.decode(ngx.req.get_body_data())
local ok, err
if case.check then
    ok, err = certificates.check(case.check, case.ciphers)
else
    ok, err = certificates.validate(case)
end
ngx.say(cjson.encode({ ok = ok and true or false, err = err or "" }))
"""

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
HOSTS = st.one_of(
    st.lists(LABEL, min_size=1, max_size=5).map(".".join),
    st.lists(LABEL, min_size=1, max_size=5).map(lambda labels: "*." + ".".join(labels)),
    st.text(alphabet="abcXYZ019-.*_ \n/;{}\"'$", max_size=40),
    st.text(max_size=20),
)


@pytest.fixture(scope="module")
def lua_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("certificates-validation")
    with lua_nginx(work, requires=["ingressctl.configuration", "ingressctl.certificates"], location=CHECK) as port:
        yield port


def _lua(port: int, doc: dict[str, Any]) -> dict[str, Any]:
    resp = request(port, host="localhost", path="/run", method="POST", body=json.dumps(doc).encode())
    assert resp.status == 200, resp.body
    result: dict[str, Any] = resp.json()
    return result


def _translate_sends(host: str) -> bool:
    try:
        return validate.host(host) == host
    except Invalid:
        return False


@SETTINGS
@given(host=HOSTS)
@example(host="*." + ".".join(["a" * 63] * 3) + "." + "b" * 60)  # 254 characters: too long
@example(host="*." + ".".join(["a" * 63] * 3) + "." + "b" * 59)  # 253
@example(host="a" * 64)
@example(host="*.example.com")
@example(host="*")
@example(host="a.*.example.com")
@example(host="Example.com")
@example(host="example.com.")
def test_a_host_is_accepted_exactly_when_translate_accepts_it(lua_port: int, host: str) -> None:
    result = _lua(lua_port, {"default": NAME, "hosts": {host: NAME}})
    assert result["ok"] == _translate_sends(host), (host, result)
    if not result["ok"]:
        assert "hosts" in result["err"]


@SETTINGS
@given(
    name=st.one_of(
        st.from_regex(r"[0-9a-f]{32}", fullmatch=True), st.text(alphabet="0123456789abcdefABCDEF/.", max_size=34)
    )
)
def test_a_certificate_name_is_a_content_hash(lua_port: int, name: str) -> None:
    is_hash = re.fullmatch(r"[0-9a-f]{32}", name) is not None
    assert _lua(lua_port, {"default": name, "hosts": {}})["ok"] == is_hash
    result = _lua(lua_port, {"default": NAME, "hosts": {"a.example.com": name}})
    assert result["ok"] == is_hash and (is_hash or "hosts.a.example.com" in result["err"])


@pytest.mark.parametrize("name", [*REFUSED, *ACCEPTED])
def test_the_store_refuses_exactly_what_the_checker_refuses(lua_port: int, name: str, tmp_path: Path) -> None:
    cert, key = REFUSED[name][0](tmp_path) if name in REFUSED else ACCEPTED[name](tmp_path)
    try:
        checked = certificate_from_pem(cert, key)
    except BadCertificate:
        checked = None
    # What the controller would send: the re-serialised PEM, or (refused by the checker) the Secret's own.
    pem = checked.certificate.pem if checked else Certificate.from_pem(cert, key).pem
    result = _lua(lua_port, {"check": pem.decode(), "ciphers": GlobalOptions().ssl_ciphers})
    assert result["ok"] == (checked is not None), (name, result)
    if checked is None:
        assert "failed (SSL: " in result["err"] and ("too small" in result["err"] or "too weak" in result["err"])
