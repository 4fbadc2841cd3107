"""The certificate store's document, derived from the static part (ingressctl.translate.sni): each
TLS host and its aliases map to their certificate, everything else gets the default; only what
nginx.conf names as files is written to disk (the SSL context's placeholder, proxy-ssl-secret's)."""

from __future__ import annotations

from ingressctl.config import PREFIX, Certificate, GlobalOptions, Location, Policy, Server, ServerPolicy, StaticConfig
from ingressctl.translate.sni import file_certificates, served
from tests.certs import make_cert

PLACEHOLDER, DEFAULT, A, WILD, CLIENT, CA = (
    Certificate.from_pem(*make_cert(h))
    for h in ("placeholder.invalid", "default.example", "a.example", "*.w.example", "client.example", "ca.example")
)


def static(*servers: Server) -> StaticConfig:
    return StaticConfig(
        servers=servers,
        default_server=Server("", "_", (Location("/", PREFIX, None),)),
        certificates=tuple(sorted((PLACEHOLDER, DEFAULT, A, WILD, CLIENT, CA), key=lambda c: c.name)),
        default_certificate=DEFAULT.name,
        options=GlobalOptions(),
        context_certificate=PLACEHOLDER.name,
    )


ROUTE = (Location("/", PREFIX, "default/app:80"),)
TLS_HOSTS = static(
    Server("a.example", "a.example", ROUTE, A.name, True, ServerPolicy(aliases=("alias.example", "a.example"))),
    Server("*.w.example", "~^[^.]+\\.w\\.example$", ROUTE, WILD.name, True),
    Server("plain.example", "plain.example", ROUTE),
    Server(
        "up.example",
        "up.example",
        (
            Location(
                "/", PREFIX, "default/app:443", Policy(protocol="HTTPS", ssl_client=CLIENT.name, ssl_trusted=CA.name)
            ),
        ),
    ),
)


def test_tls_hosts_and_their_aliases_map_to_their_certificates_the_rest_to_the_default() -> None:
    sni = served(TLS_HOSTS)
    assert dict(sni.hosts) == {"a.example": A.name, "alias.example": A.name, "*.w.example": WILD.name}
    assert sni.default == DEFAULT.name
    assert set(sni.certificates) == {DEFAULT.name, A.name, WILD.name}
    document = sni.document(ciphers="HIGH", held=frozenset({A.name}))
    certificates = document["certificates"]
    assert isinstance(certificates, dict) and set(certificates) == {DEFAULT.name, WILD.name}
    assert document["hosts"] == dict(sni.hosts) and document["ciphers"] == "HIGH"


def test_the_key_changes_with_a_certificate_and_only_then() -> None:
    rotated = static(
        *(
            s if s.host != "a.example" else Server(s.host, s.server_name, s.locations, WILD.name, True)
            for s in TLS_HOSTS.servers
        )
    )
    assert served(rotated).key != served(TLS_HOSTS).key
    same = static(*TLS_HOSTS.servers)
    assert same is not TLS_HOSTS and served(same).key == served(TLS_HOSTS).key


def test_only_what_nginx_conf_names_is_a_file() -> None:
    assert {c.name for c in file_certificates(TLS_HOSTS)} == {PLACEHOLDER.name, CLIENT.name, CA.name}
    # A certificate both served by SNI and used as a client certificate stays a file.
    both = static(*TLS_HOSTS.servers, Server("b.example", "b.example", ROUTE, CLIENT.name, True))
    assert CLIENT.name in {c.name for c in file_certificates(both)}
