"""The balancing algorithms: Python's list (ingressctl.config.ALGORITHMS, what translate may ask
for) and the Lua balancer's registry (one module per algorithm) are the same; the ConfigMap's
`load-balance` reaches every backend, and the Lua API gets it only when it is not the default."""

from __future__ import annotations

import json
import re

from ingressctl.cache import Cache
from ingressctl.config import ALGORITHMS, ROUND_ROBIN, Backend, Certificate, Endpoint, GlobalOptions
from ingressctl.dataplane.luaapi import BackendsEncoder
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, Translator
from ingressctl.translate.options import apply_configmap
from tests.certs import make_cert
from tests.harness import REPO, backend, endpoint_slice, ingress, ingress_class, rule, service


def test_python_and_lua_know_the_same_algorithms() -> None:
    source = (REPO / "lua" / "ingressctl" / "balancer.lua").read_text()
    table = re.search(r"M\.ALGORITHMS = \{(.*?)\n\}", source, re.S)
    assert table
    registered = dict(re.findall(r'(\w+) = require\("ingressctl\.balancer\.(\w+)"\)', table.group(1)))
    assert all(key == module for key, module in registered.items()), "each name is its module's"
    modules = {p.stem for p in (REPO / "lua" / "ingressctl" / "balancer").glob("*.lua")}
    assert set(registered) == set(ALGORITHMS) == modules
    assert re.search(rf'M\.DEFAULT_ALGORITHM = "{ROUND_ROBIN}"', source)


def test_the_encoder_sends_an_algorithm_only_when_it_is_not_the_default() -> None:
    endpoints = (Endpoint("10.0.0.1", 80),)
    plain = json.loads(BackendsEncoder().encode([Backend("a/b:80", endpoints)]))["backends"][0]
    assert "algorithm" not in plain
    chosen = json.loads(BackendsEncoder().encode([Backend("a/b:80", endpoints, "other")]))["backends"][0]
    assert chosen["algorithm"] == "other"


def test_load_balance_is_validated_against_the_registry() -> None:
    options, errors = apply_configmap(GlobalOptions(), {"load-balance": ROUND_ROBIN})
    assert (options.load_balance, errors) == (ROUND_ROBIN, [])
    options, errors = apply_configmap(GlobalOptions(), {"load-balance": "ewma;"})
    assert options.load_balance == ROUND_ROBIN
    assert [(e.field, e.reason) for e in errors] == [("data.load-balance", "'ewma;' is not one of round_robin, ewma")]
    # The other registered algorithms follow from upstream-hash-by and affinity, never from load-balance.
    options, errors = apply_configmap(GlobalOptions(), {"load-balance": "chash"})
    assert options.load_balance == ROUND_ROBIN
    assert [e.reason for e in errors] == ["'chash' is not one of round_robin, ewma"]


def test_every_backend_carries_the_algorithm_also_after_an_endpoint_change() -> None:
    """Translate puts the options' algorithm on each backend, and the endpoint-only path keeps it."""
    cache = Cache()
    objects = [ingress_class(), service("app"), endpoint_slice("app", ["10.0.0.1"])]
    objects.append(ingress("a", rules=[rule("a.example.com", ("/", "Prefix", backend("app")))]))
    cache.load(Event(EventType.ADDED, o["kind"], o) for o in objects)
    settings = Settings(
        fallback_certificate=Certificate.from_pem(*make_cert("fallback")),
        options=GlobalOptions(load_balance="ewma"),
    )
    translator = Translator(settings)
    config = translator.full(cache.snapshot())
    assert [(b.name, b.algorithm) for b in config.backends] == [("default/app:80", "ewma")]
    cache.take_changes()
    cache.apply(Event(EventType.MODIFIED, "EndpointSlice", endpoint_slice("app", ["10.0.0.1", "10.0.0.2"])))
    changes = cache.take_changes()
    assert not changes.full
    after = translator.endpoints(config, cache.snapshot(), services=set(changes.services))
    assert [(b.algorithm, len(b.endpoints)) for b in after.backends] == [("ewma", 2)]
