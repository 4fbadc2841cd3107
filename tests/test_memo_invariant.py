"""The translate memo keys results by the identity of the objects they were computed from; that is
only right while nobody edits an object after a source handed it out. This test would catch it:
generated sequences of edits to a manifests folder go through the real ManifestsSource (per-file
diffs, shared small mappings), the real Cache and the Translator with its memo, and after every
step (1) each object ever handed out still equals the deep copy taken when it was handed out, and
(2) the memoised Configuration equals a fresh translation of a deep copy of the snapshot.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingressctl.cache import Cache
from ingressctl.config import Certificate
from ingressctl.model import Event, EventType
from ingressctl.sources.manifests import ManifestsSource
from ingressctl.translate import Settings, Translator, translate
from tests.certs import make_cert
from tests.harness import backend, endpoint_slice, ingress, ingress_class, rule, service, write_manifests

SETTINGS = Settings(fallback_certificate=Certificate.from_pem(*make_cert("fallback")))
FILES = ("a.yaml", "b.yaml", "c.yaml")
SERVICES = ("app", "web")
HOSTS = ("one.example.com", "two.example.com")
ADDRESSES = ("10.0.0.1", "10.0.0.2", "10.0.0.3")

# One file's content: a few objects out of a small universe, so that files overlap and objects
# move between files, come back equal, and change.
# Canary Ingresses too (issue 13): merged into the main routes, changed in weight, left without a main.
CANARY = "nginx.ingress.kubernetes.io/canary"
ingresses = st.builds(
    lambda name, host, path, svc, kind, notes: ingress(
        name, rules=[rule(host, (path, kind, backend(svc)))], annotations=notes
    ),
    st.sampled_from(("i1", "i2", "i3")),
    st.sampled_from(HOSTS),
    st.sampled_from(("/", "/api", "/api/")),
    st.sampled_from(SERVICES),
    st.sampled_from(("Prefix", "Exact")),
    st.sampled_from((None, {CANARY: "true", CANARY + "-weight": "10"}, {CANARY: "true", CANARY + "-weight": "60"})),
)
slices = st.builds(
    lambda svc, addresses: endpoint_slice(svc, sorted(addresses)),
    st.sampled_from(SERVICES),
    st.sets(st.sampled_from(ADDRESSES), max_size=3),
)
services = st.builds(service, st.sampled_from(SERVICES))
contents = st.lists(st.one_of(ingresses, slices, services), max_size=4)
steps = st.lists(st.tuples(st.sampled_from(FILES), st.one_of(st.none(), contents)), min_size=1, max_size=12)


def _handed_out(events: list[Event]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        out.extend(event.objects)
        if event.obj is not None:
            out.append(event.obj)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_objects_are_never_edited_after_they_are_handed_out(script: list[tuple[str, list[Any] | None]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_manifests(folder, "class.yaml", [ingress_class()])
        source = ManifestsSource(folder, notify=False)
        cache = Cache()
        translator = Translator(SETTINGS)
        seen: list[tuple[Any, Any]] = []  # (object handed out, its deep copy then)

        def feed(events: list[Event]) -> None:
            seen.extend((obj, copy.deepcopy(obj)) for obj in _handed_out(events))
            cache.load(events)
            snapshot = cache.snapshot()
            memoised = translator.full(snapshot)
            frozen = copy.deepcopy({kind: dict(objs) for kind, objs in snapshot.objects.items()})
            fresh_cache = Cache()
            fresh_cache.load(Event(EventType.REPLACED, k, objects=tuple(objs.values())) for k, objs in frozen.items())
            assert memoised == translate(fresh_cache.snapshot(), SETTINGS)
            for obj, then in seen:
                assert obj == then, "an object was edited after it was handed out"

        feed(source.load_once())
        for name, docs in script:
            path = folder / name
            if docs is None:
                path.unlink(missing_ok=True)
            else:
                write_manifests(folder, name, docs)
            feed(source.update([path]))
