"""The incremental paths give exactly what a full translation gives: update_endpoints() for
endpoint-only changes, and the backends encoder that reuses unchanged JSON fragments."""

from __future__ import annotations

import json
from typing import Any

from ingressctl.cache import Cache
from ingressctl.certs import self_signed
from ingressctl.config import Configuration
from ingressctl.dataplane.luaapi import BackendsEncoder
from ingressctl.model import Event, EventType
from ingressctl.translate import Settings, Translator, translate
from tests.harness import backend, endpoint_slice, ingress, ingress_class, rule, service

SETTINGS = Settings(fallback_certificate=self_signed())


def _world() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = [ingress_class()]
    for i in range(5):
        objs += [
            service(f"s{i}", target=8080),
            endpoint_slice(f"s{i}", [f"10.0.{i}.1", f"10.0.{i}.2"], port=8080),
            ingress(f"i{i}", rules=[rule(f"h{i}.example.com", ("/", "Prefix", backend(f"s{i}", "http")))]),
        ]
    legacy = service("legacy", target=8080)
    legacy["spec"].pop("selector")
    objs += [
        legacy,
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "legacy", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.9.0.1"}], "ports": [{"name": "http", "port": 8080}]}],
        },
        ingress("legacy", rules=[rule("legacy.example.com", ("/", "Prefix", backend("legacy")))]),
    ]
    return objs


STEPS: list[tuple[str, Event]] = [
    (
        "scale-up",
        Event(
            EventType.MODIFIED, "EndpointSlice", endpoint_slice("s0", ["10.0.0.1", "10.0.0.2", "10.0.0.3"], port=8080)
        ),
    ),
    (
        "not-ready",
        Event(
            EventType.MODIFIED,
            "EndpointSlice",
            endpoint_slice("s1", ["10.0.1.1", "10.0.1.2"], port=8080, not_ready=("10.0.1.1",)),
        ),
    ),
    (
        "second-slice",
        Event(EventType.ADDED, "EndpointSlice", endpoint_slice("s2", ["10.0.2.9"], port=8080, name="s2-extra")),
    ),
    ("delete-slice", Event(EventType.DELETED, "EndpointSlice", endpoint_slice("s3", [], port=8080))),
    (
        "slice-for-unused-service",
        Event(EventType.ADDED, "EndpointSlice", endpoint_slice("nobody", ["10.1.1.1"], port=8080)),
    ),
    (
        "legacy-endpoints",
        Event(
            EventType.MODIFIED,
            "Endpoints",
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": "legacy", "namespace": "default"},
                "subsets": [
                    {"addresses": [{"ip": "10.9.0.2"}, {"ip": "10.9.0.3"}], "ports": [{"name": "http", "port": 8080}]}
                ],
            },
        ),
    ),
]


def test_update_endpoints_equals_a_full_translation() -> None:
    cache = Cache()
    for obj in _world():
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    translator = Translator(SETTINGS)
    config = translator.full(cache.snapshot())
    for name, event in STEPS:
        assert event.obj is not None
        cache.apply(event)
        meta = event.obj["metadata"]
        service_name = meta.get("labels", {}).get("kubernetes.io/service-name", meta["name"])
        updated = translator.endpoints(config, cache.snapshot(), services={("default", service_name)})
        fresh = translate(cache.snapshot(), SETTINGS)
        assert updated == fresh, name
        assert updated.static is config.static, "endpoint changes never touch the static part"
        config = updated
    assert [e.address for e in next(b for b in config.backends if b.name == "default/s0:80").endpoints] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]
    assert next(b for b in config.backends if b.name == "default/s3:80").endpoints == ()


def _document(config: Configuration) -> Any:
    return config.backends_document()


def test_encoder_matches_plain_json_and_reuses_fragments() -> None:
    cache = Cache()
    for obj in _world():
        cache.apply(Event(EventType.ADDED, obj["kind"], obj))
    translator = Translator(SETTINGS)
    encoder = BackendsEncoder()
    config = translator.full(cache.snapshot())
    assert json.loads(encoder.encode(config.backends)) == _document(config)
    cache.apply(STEPS[0][1])
    updated = translator.endpoints(config, cache.snapshot(), services={("default", "s0")})
    unchanged = [b for b in updated.backends if b.name != "default/s0:80"]
    assert all(any(b is old for old in config.backends) for b in unchanged), "unchanged backends are the same objects"
    assert json.loads(encoder.encode(updated.backends)) == _document(updated)
    assert json.loads(encoder.encode(())) == {"backends": []}


def test_cache_slice_index_follows_every_change() -> None:
    """The EndpointSlice-by-Service index the cache keeps up to date equals one built from scratch,
    whatever the sequence of adds, relabels and deletes."""
    import random

    rng = random.Random(7)
    cache = Cache()
    for step in range(300):
        name = f"slice-{rng.randrange(12)}"
        owner = f"svc-{rng.randrange(4)}"
        obj = endpoint_slice(owner, [f"10.0.0.{step % 250}"], name=name, namespace=rng.choice(["a", "b"]))
        kind = rng.choice([EventType.ADDED, EventType.MODIFIED, EventType.DELETED])
        cache.apply(Event(kind, "EndpointSlice", obj))
        index = cache.snapshot().slices_by_service
        rebuilt: dict[tuple[str, str], dict[tuple[str, str], Any]] = {}
        for key, slice_obj in cache.snapshot().of("EndpointSlice").items():
            label = slice_obj["metadata"]["labels"]["kubernetes.io/service-name"]
            rebuilt.setdefault((key[0], label), {})[key] = slice_obj
        assert {k: dict(v) for k, v in index.items()} == rebuilt, step
