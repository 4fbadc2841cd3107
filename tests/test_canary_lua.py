"""The configuration API's canary validation (lua/ingressctl/configuration.lua) against translate's
parsers, and the balancer's canary decision (lua/ingressctl/canary.lua) against a model of ingress-nginx's
rules, on generated input, in a real nginx worker: every canary policy translate can make is accepted,
a field of the wrong shape is refused with its name, the header variable read is nginx's name for the
header, and header, cookie and weight decide in ingress-nginx's order for real requests."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingressctl.config import Backend, Canary, Endpoint
from ingressctl.dataplane.luaapi import BackendsEncoder
from ingressctl.translate.annotations import values as v
from ingressctl.translate.validate import Invalid
from tests.harness import lua_nginx, request
from tests.test_lua_validation import _lua

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CHECK = """
local cjson = require("cjson.safe")
local configuration = require("ingressctl.configuration")
local canary = require("ingressctl.canary")
ngx.req.read_body()
local case = cjson.decode(ngx.req.get_body_data())
if case.kind == "header" then
    ngx.say(cjson.encode({ ok = true, err = canary.header_variable(case.value) }))
    return
end
if case.kind == "choose" then -- the decision for this very request (its headers and cookies)
    ngx.say(cjson.encode({ ok = true, err = canary.choose(canary.prepare(cjson.decode(case.value))) }))
    return
end
local ok, err = configuration.validate(cjson.decode(case.value))
ngx.say(cjson.encode({ ok = ok and true or false, err = err or "" }))
"""

MAIN, PREVIEW = "default/app:80", "default/next:80"
NAME = f"{MAIN}~{PREVIEW}~default/app-canary"


@pytest.fixture(scope="module")
def lua_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("canary-lua")
    with lua_nginx(work, requires=["ingressctl.configuration"], location=CHECK) as port:
        yield port


def _accepted(parse: Any) -> Any:
    def check(text: str) -> bool:
        try:
            parse(text)
        except Invalid:
            return False
        return True

    return check


_CHARS = "aZ09-_.~!&()*+,=:@/?%| ^$[]\\dws"
HEADERS = st.text(alphabet="aZ09-", min_size=1, max_size=20).filter(_accepted(v.header_name))
COOKIES = st.text(alphabet="aZ09-_.", min_size=1, max_size=20).filter(_accepted(v.cookie_name))
VALUES = st.text(alphabet=_CHARS, min_size=1, max_size=30).filter(_accepted(v.header_value))
PATTERNS = st.text(alphabet=_CHARS, min_size=1, max_size=30).filter(_accepted(v.header_pattern))


@st.composite
def policies(draw: st.DrawFn) -> Canary:
    total = draw(st.integers(100, 1_000_000))
    return Canary(
        main=MAIN,
        backend=PREVIEW,
        header=draw(st.none() | HEADERS),
        header_value=draw(st.none() | VALUES),
        header_pattern=draw(st.none() | PATTERNS),
        cookie=draw(st.none() | COOKIES),
        weight=draw(st.integers(0, total)),
        weight_total=total,
    )


def _document(policy: Canary) -> str:
    backends = [
        Backend(MAIN, (Endpoint("10.0.0.1", 80),)),
        Backend(PREVIEW, (Endpoint("10.0.0.2", 80),)),
        Backend(NAME, (), canary=policy),
    ]
    return BackendsEncoder().encode(backends)


@SETTINGS
@given(policy=policies())
def test_every_policy_translate_makes_is_accepted(lua_port: int, policy: Canary) -> None:
    result = _lua(lua_port, "document", _document(policy))
    assert result["ok"], (policy, result["err"])


@SETTINGS
@given(name=HEADERS)
def test_the_header_variable_is_nginx_s_name(lua_port: int, name: str) -> None:
    assert _lua(lua_port, "header", name)["err"] == "http_" + name.lower().replace("-", "_")


WRONG = [
    ("extra", 1, "canary.extra is not a canary field"),
    ("main", "default/other:80", ".main and .backend must be the backends the name starts with"),
    ("backend", "x y", ".main and .backend"),
    ("header", "X_Canary", ".header must be a header name"),
    ("header", 7, ".header must be a header name"),
    ("header_value", 'a"b', ".header_value"),
    ("header_pattern", "(", ".header_pattern is not a regular expression"),
    ("header_pattern", "a;b", ".header_pattern has a character"),
    ("cookie", "a b", ".cookie must be a cookie name"),
    ("weight", 101, ".weight and .weight_total"),
    ("weight", -1, ".weight and .weight_total"),
    ("weight", 1.5, ".weight and .weight_total"),
    ("weight_total", 0, ".weight and .weight_total"),
    ("weight_total", 2_000_000, ".weight and .weight_total"),
]


@pytest.mark.parametrize(("field", "value", "reason"), WRONG)
def test_a_wrong_canary_field_is_refused_with_its_name(lua_port: int, field: str, value: Any, reason: str) -> None:
    doc = json.loads(_document(Canary(main=MAIN, backend=PREVIEW, weight=10)))
    doc["backends"][2]["canary"][field] = value
    result = _lua(lua_port, "document", json.dumps(doc))
    assert not result["ok"] and "backends[2].canary" in result["err"] and reason in result["err"], result


def test_canary_names_and_canary_fields_go_together(lua_port: int) -> None:
    doc = json.loads(_document(Canary(main=MAIN, backend=PREVIEW, weight=10)))
    del doc["backends"][2]["canary"]
    result = _lua(lua_port, "document", json.dumps(doc))
    assert not result["ok"] and "must be set in a backend named main~canary~ingress" in result["err"]
    doc = json.loads(_document(Canary(main=MAIN, backend=PREVIEW, weight=10)))
    doc["backends"][0]["canary"] = doc["backends"][2]["canary"]
    result = _lua(lua_port, "document", json.dumps(doc))
    assert not result["ok"] and "backends[0].canary.main" in result["err"]
    for bad in (f"{MAIN}~{PREVIEW}", f"{MAIN}~{PREVIEW}~Default/x", f"{MAIN}~{PREVIEW}~a/b~c"):
        doc = json.loads(_document(Canary(main=MAIN, backend=PREVIEW, weight=10)))
        doc["backends"][2]["name"] = bad
        result = _lua(lua_port, "document", json.dumps(doc))
        assert not result["ok"] and "backends[2].name" in result["err"], (bad, result)


def _model(policy: Canary, header: str | None, cookie: str | None) -> str:
    """ingress-nginx's route_to_alternative_balancer (rootfs/etc/nginx/lua/balancer.lua), for weights
    0 and the total (the random draw then decides nothing)."""
    if policy.header and header is not None:
        if policy.header_value:
            if header == policy.header_value:
                return PREVIEW
        elif policy.header_pattern:
            if re.search(policy.header_pattern, header):
                return PREVIEW
        elif header == "always":
            return PREVIEW
        elif header == "never":
            return MAIN
    if policy.cookie and cookie is not None:
        if cookie == "always":
            return PREVIEW
        if cookie == "never":
            return MAIN
    return PREVIEW if policy.weight == policy.weight_total else MAIN


REQUEST_VALUES = st.one_of(st.none(), st.sampled_from(["always", "never", "v1", "v12", "x"]), VALUES)


@SETTINGS
@given(
    policy=policies(),
    header=REQUEST_VALUES,
    cookie=REQUEST_VALUES,
    everything=st.booleans(),
    pattern_only=st.booleans(),
)
def test_the_decision_is_ingress_nginx_s(
    lua_port: int, policy: Canary, header: str | None, cookie: str | None, everything: bool, pattern_only: bool
) -> None:
    """Header (value, pattern, always/never), then cookie (always/never), then weight: the balancer's
    choice for a real request equals the model of ingress-nginx's rules, for any policy translate makes."""
    policy = dataclasses.replace(
        policy,
        weight=policy.weight_total if everything else 0,
        header_value=None if pattern_only else policy.header_value,
    )
    headers = {}
    if policy.header and header is not None:
        headers[policy.header] = header
    if policy.cookie and cookie is not None:
        headers["Cookie"] = f"other=1; {policy.cookie}={cookie}"
    body = json.dumps({"kind": "choose", "value": json.dumps(policy.document())}).encode()
    resp = request(lua_port, host="localhost", path="/run", method="POST", body=body, headers=headers)
    assert resp.status == 200, resp.body
    assert resp.json()["err"] == _model(
        policy, headers.get(policy.header or ""), cookie if "Cookie" in headers else None
    )
