"""The Lua configuration API's validators against translate's Python ones, on generated input.

Hypothesis makes the cases on the Python side; each one is sent to a real nginx worker running
lua/ingressctl/configuration.lua, which answers what its validators say. An address or backend
name is accepted by Lua exactly when Python accepts it; every document the controller's encoder
writes is accepted, and a document with one field of the wrong shape is refused with a reason
naming that field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingressctl.config import ALGORITHMS, LOAD_BALANCE, Backend, Balancing, Cookie, Endpoint
from ingressctl.dataplane.luaapi import BackendsEncoder, LuaState
from ingressctl.translate import validate
from ingressctl.translate.annotations.balancing import hash_by
from ingressctl.translate.validate import Invalid
from tests.harness import lua_nginx, request

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CHECK = """
local cjson = require("cjson.safe")
local configuration = require("ingressctl.configuration")
ngx.req.read_body()
local case = cjson.decode(ngx.req.get_body_data())
local ok, err
if case.kind == "address" then
    ok = configuration.valid_address(case.value)
elseif case.kind == "name" then
    ok = configuration.valid_name(case.value)
elseif case.kind == "document" then
    ok, err = configuration.validate(cjson.decode(case.value))
else
    ok, err = configuration.validate_delta(cjson.decode(case.value))
end
ngx.say(cjson.encode({ ok = ok and true or false, err = err or "" }))
"""


@pytest.fixture(scope="module")
def lua_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work = tmp_path_factory.mktemp("lua-validation")
    with lua_nginx(work, requires=["ingressctl.configuration"], location=CHECK) as port:
        yield port


def _lua(port: int, kind: str, value: Any) -> dict[str, Any]:
    body = json.dumps({"kind": kind, "value": value}).encode()
    resp = request(port, host="localhost", path="/run", method="POST", body=body)
    assert resp.status == 200, resp.body
    result: dict[str, Any] = resp.json()
    return result


def _python_accepts(check: Any, value: object) -> bool:
    try:
        check(value)
    except Invalid:
        return False
    return True


def _python_name(value: str) -> None:
    """A backend name as translate makes it: namespace/service:port (the Service port's number or name)."""
    namespace, slash, rest = value.partition("/")
    service, colon, port = rest.rpartition(":")
    if not slash or not colon:
        raise Invalid(f"{value!r} is not namespace/service:port")
    validate.name(namespace)
    validate.service_name(service)
    if port.startswith("service-upstream-") and port[17:].isdigit() and port[17:18] != "0":
        validate.port_number(int(port[17:]))  # a service-upstream backend: the cluster IP's port
        return
    validate.port_name(port)  # digits are a valid port name too: a number is one


# Addresses: real ones of both families in every spelling Python prints, and strings over the
# alphabet addresses are made of, where the two grammars could differ.
ADDRESS_CHARS = st.sampled_from([*"0123456789abcdefABCDEF:.", "::", "%", "g", " ", "\n"])
ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda a: a.exploded),
    st.ip_addresses(v=4).map(lambda a: "::ffff:" + str(a)),
    st.lists(ADDRESS_CHARS, max_size=20).map("".join),
    st.lists(st.sampled_from(["", "0", "1", "ff", "ffff", "10000", "01", "255", "256"]), min_size=1, max_size=10).map(
        lambda parts: ":".join(parts)
    ),
    st.lists(st.sampled_from(["0", "1", "01", "255", "256", "999", "", "1234"]), min_size=1, max_size=5).map(
        lambda parts: ".".join(parts)
    ),
)


@SETTINGS
@given(address=ADDRESSES)
@example(address=":::::")
@example(address="1:2:3:4:5:6:7::")
@example(address="::1:2:3:4:5:6:7")
@example(address="1:2:3:4:5:6:7:8::")
@example(address="1:2:3:4:5:6:1.2.3.4")
@example(address="1:2:3:4:5:6:7:1.2.3.4")
@example(address="01.2.3.4")
@example(address="fe80::1%eth0")
@example(address=":1::")
@example(address="1::2::3")
def test_addresses_agree(lua_port: int, address: str) -> None:
    assert _lua(lua_port, "address", address)["ok"] == _python_accepts(validate.ip_address, address), address


# Lua numbers cannot tell 80.0 from 80 (the controller sends integers only): integers, and
# fractions, which both refuse.
PORT_VALUES = st.one_of(
    st.integers(-(2**31), 2**31),
    st.integers(-10, 70000),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
)


@SETTINGS
@given(port=PORT_VALUES)
@example(port=0)
@example(port=65535)
@example(port=65536)
def test_ports_agree(lua_port: int, port: float) -> None:
    doc = json.dumps({"backends": [{"name": "a/b:80", "endpoints": [{"address": "10.0.0.1", "port": port}]}]})
    assert _lua(lua_port, "document", doc)["ok"] == _python_accepts(validate.port_number, port), port


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
NAME_PART = st.one_of(
    LABEL,
    st.lists(LABEL, min_size=1, max_size=3).map(".".join),
    st.text(alphabet="az09-.:/_A", max_size=12),
    st.just("a" * 64),
    st.just("p" * 16),
)


@SETTINGS
@given(namespace=NAME_PART, service=NAME_PART, port=st.one_of(NAME_PART, st.integers(0, 70000).map(str)))
@example(namespace="default", service="app", port="80")
@example(namespace="a..b", service="app", port="80")
@example(namespace="ns", service="a.b", port="http")
@example(namespace="ns", service="app", port="a--b")
@example(namespace="ns", service="app", port="service-upstream-80")
@example(namespace="ns", service="app", port="service-upstream-65536")
@example(namespace="ns", service="app", port="service-upstream-080")
def test_backend_names_agree(lua_port: int, namespace: str, service: str, port: str) -> None:
    name = f"{namespace}/{service}:{port}"
    assert _lua(lua_port, "name", name)["ok"] == _python_accepts(_python_name, name), name


# What translate names a backend with: the Service port's number or (for an unresolved one) its name.
PORTS = st.one_of(st.integers(1, 65535).map(str), LABEL.filter(lambda p: "--" not in p))
ENDPOINTS = st.builds(
    Endpoint,
    address=st.ip_addresses().map(str),
    port=st.integers(1, 65535),
)
# What translate's balancing annotations can make (ingressctl.translate.annotations.balancing's grammars).
_HASH_PIECE = st.one_of(
    st.sampled_from(["$remote_addr", "${request_uri}"]),
    st.from_regex(r"\$(http|cookie|arg)_[A-Za-z0-9_]{1,8}", fullmatch=True),
)
_HASH_BY = st.builds(
    lambda first, rest: first + "".join(rest),
    _HASH_PIECE,
    st.lists(st.one_of(_HASH_PIECE, st.from_regex(r"[A-Za-z0-9._:/@,=~+|-]{1,8}", fullmatch=True)), max_size=4),
).filter(lambda e: _python_accepts(hash_by, e))  # text glued to a name makes another name
_COOKIES = st.builds(
    Cookie,
    persistent=st.booleans(),
    name=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    path=st.from_regex(r"/[A-Za-z0-9._~!*+,=:@/%-]{0,255}", fullmatch=True),
    domain=st.none() | st.from_regex(r"\.?[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){0,3}", fullmatch=True),
    max_age=st.none() | st.integers(1, 315360000),
    expires=st.none() | st.integers(1, 315360000),
    samesite=st.sampled_from([None, "None", "Lax", "Strict"]),
    conditional_samesite_none=st.booleans(),
    secure=st.sampled_from([None, True, False]),
    change_on_failure=st.booleans(),
)
BALANCING = st.builds(
    Balancing,
    load_balance=st.sampled_from(LOAD_BALANCE),
    hash_by=st.just("") | _HASH_BY,
    subset_size=st.just(0) | st.integers(1, 64),
    cookie=st.none() | _COOKIES,
)
BACKENDS = st.lists(
    st.one_of(
        st.builds(
            Backend,
            name=st.builds(lambda n, s, p: f"{n}/{s}:{p}", LABEL, LABEL, PORTS),
            endpoints=st.lists(ENDPOINTS, max_size=4).map(tuple),
            algorithm=st.sampled_from(ALGORITHMS),
        ),
        st.builds(
            lambda name, endpoints, balancing: Backend(name, endpoints, balancing.algorithm, balancing=balancing),
            st.builds(lambda n, s, p: f"{n}/{s}:{p}", LABEL, LABEL, PORTS),
            st.lists(ENDPOINTS, max_size=4).map(tuple),
            BALANCING,
        ),
    ),
    max_size=4,
    unique_by=lambda b: b.name,
)


@SETTINGS
@given(backends=BACKENDS)
def test_every_document_the_controller_writes_is_accepted(lua_port: int, backends: list[Backend]) -> None:
    encoder = BackendsEncoder()
    result = _lua(lua_port, "document", encoder.encode(backends))
    assert result["ok"], result["err"]
    removals = [b.name for b in backends[:1]]
    delta = encoder.encode_delta(base=LuaState(epoch="e", version=3), upserts=backends[1:], removals=removals)
    result = _lua(lua_port, "delta", delta)
    assert result["ok"], result["err"]


# One field of a valid document replaced by a value of the wrong shape: (path, value, reason).
WRONG_SHAPES = [
    ((), {"x": 1}, "body must be a JSON object"),
    ((), [], "body must be a JSON object"),
    (("backends",), {"x": 1}, "backends must be an array"),
    (("backends",), "x", "backends must be an array"),
    (("backends",), 1, "backends must be an array"),
    (("backends",), None, "'backends' array"),
    (("backends", 0), [1], "backends[0] must be an object"),
    (("backends", 0), "x", "backends[0] must be an object"),
    (("backends", 0, "extra"), 1, "backends[0].extra is not a backend field"),
    (("backends", 0, "name"), 1, "backends[0].name"),
    (("backends", 0, "algorithm"), "random", "backends[0].algorithm"),
    (("backends", 0, "endpoints"), {"x": 1}, "backends[0].endpoints must be an array"),
    (("backends", 0, "endpoints"), None, "backends[0].endpoints must be an array"),
    (("backends", 0, "endpoints", 0), ["10.0.0.1", 80], "backends[0].endpoints[0] must be an object"),
    (("backends", 0, "endpoints", 0, "weight"), 1, "backends[0].endpoints[0].weight is not an endpoint field"),
    (("backends", 0, "endpoints", 0, "address"), ":::::", "backends[0].endpoints[0].address"),
    (("backends", 0, "endpoints", 0, "address"), ["10.0.0.1"], "backends[0].endpoints[0].address"),
    (("backends", 0, "endpoints", 0, "port"), "80", "backends[0].endpoints[0].port"),
    (("backends", 0, "endpoints", 0, "port"), 1e999, "backends[0].endpoints[0].port"),
]


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is None and isinstance(target, dict):
        del target[last]
    else:
        target[last] = value
    return doc


@SETTINGS
@given(backends=BACKENDS.filter(lambda bs: bool(bs and bs[0].endpoints)), case=st.sampled_from(WRONG_SHAPES))
def test_a_wrong_shape_anywhere_is_refused_with_its_field(
    lua_port: int, backends: list[Backend], case: tuple[tuple[Any, ...], Any, str]
) -> None:
    path, value, reason = case
    doc = _replace(json.loads(BackendsEncoder().encode(backends)), path, value)
    result = _lua(lua_port, "document", json.dumps(doc, allow_nan=True).replace("Infinity", "1e999"))
    assert not result["ok"], doc
    assert reason in result["err"], (doc, result["err"])


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        ({"epoch": "e", "base": 1, "upsert": {"x": 1}}, "upsert must be an array"),
        ({"epoch": "e", "base": 1, "remove": {"x": 1}}, "remove must be an array"),
        ({"epoch": "e", "base": 1, "remove": ["a/b:c", "a/b:c"]}, "remove[1] is a duplicate"),
        ({"epoch": "e", "base": 1, "remove": ["a b"]}, "remove[0] must look like"),
        ({"epoch": "e", "base": 1, "backends": []}, "not 'backends'"),
        ({"epoch": 1, "base": 1}, "epoch"),
        ({"epoch": "e", "base": -1}, "base"),
        ({"epoch": "e", "base": 1.5}, "base"),
    ],
)
def test_deltas_of_the_wrong_shape_are_refused(lua_port: int, delta: dict[str, Any], reason: str) -> None:
    result = _lua(lua_port, "delta", json.dumps(delta))
    assert not result["ok"] and reason in result["err"], result


def test_the_example_of_the_issue_is_refused(lua_port: int) -> None:
    result = _lua(lua_port, "document", '{"backends": {"x": 1}}')
    assert result == {"ok": False, "err": "backends must be an array"}
    # cjson decodes [] and {} alike: an empty object is an empty list, nothing worse.
    assert _lua(lua_port, "document", '{"backends": {}}')["ok"]
