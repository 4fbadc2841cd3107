"""Rate limits and basic auth in translate and render: zones per Ingress (and per allowlist key),
nothing for Ingresses without them, the auth Secret read into a file of validated lines only, the
Ingress rejected (never served open) when its Secret gives no user, and (hypothesis) that whatever an
auth Secret holds, the file written holds nothing but checked `user:hash` lines."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ingressctl.config import BasicAuth, Configuration, Limits
from ingressctl.translate import basicauth
from ingressctl.translate.annotations.registry import NGINX
from tests.harness import opaque_secret
from tests.test_annotations_translate import BASIC_AUTH, ing, render, run, server

APR1 = base64.b64decode(BASIC_AUTH["data"]["alice"]).decode()


def limited(name: str, host: str, annotations: dict[str, str], *, namespace: str = "default") -> dict[str, Any]:
    return ing(name, host, {NGINX + k: v for k, v in annotations.items()}, namespace=namespace)


def reasons(config: Configuration, name: str) -> list[str]:
    return [f"{p.field}: {p.reason}" for p in config.problems if p.ref.name == name]


def test_limits_get_zones_per_ingress_and_nothing_elsewhere() -> None:
    allow = {"limit-whitelist": "10.0.0.0/8"}
    config = run(
        limited("a", "a.example.com", {"limit-rps": "10", "limit-connections": "3", **allow}),
        limited("b", "b.example.com", {"limit-rpm": "60", "limit-burst-multiplier": "2", **allow}),
        limited("c", "c.example.com", {"limit-rate": "100", "limit-rate-after": "0"}),
        ing("plain", "plain.example.com"),
    )
    a = Limits("default", "a", rps=10, connections=3, allowlist=("10.0.0.0/8",))
    b = Limits("default", "b", rpm=60, burst_multiplier=2, allowlist=("10.0.0.0/8",))
    assert server(config, "a.example.com").locations[0].policy.limits == a
    assert server(config, "c.example.com").locations[0].policy.limits == Limits("default", "c", rate=100, rate_after=0)
    assert config.static.limits == (a, b)  # c has no zone: limit_rate needs none
    assert all(loc.policy is None for loc in server(config, "plain.example.com").locations)
    text = render(config)
    key = a.key  # the allowlist's variable, shared by a and b (same list): one geo and one map
    assert a.key == b.key and key.startswith("$ingressctl_limit_")
    assert text.count(f"map $ingressctl_limit_allow_{a.key_id} {key} {{") == 1
    assert '"10.0.0.0/8" 1;' in text
    assert f'limit_conn_zone {key} "zone=default_a_conn_{a.key_id}:5m";' in text
    assert f'limit_req_zone {key} "zone=default_a_rps_{a.key_id}:5m" rate=10r/s;' in text
    assert f'limit_req_zone {key} "zone=default_b_rpm_{b.key_id}:5m" rate=60r/m;' in text
    assert f'limit_req "zone=default_a_rps_{a.key_id}" burst=50 nodelay;' in text
    assert f'limit_conn "default_a_conn_{a.key_id}" 3;' in text
    assert f'limit_req "zone=default_b_rpm_{b.key_id}" burst=120 nodelay;' in text
    assert "limit_rate 100k;" in text and "limit_rate_after 0k;" in text
    plain = text.split('server_name "plain.example.com"')[1].split("server {")[0]
    assert "limit_" not in plain
    # No allowlist: the zone is keyed by the address itself; the name has no key suffix.
    alone = run(limited("d", "d.example.com", {"limit-rps": "1"}))
    assert 'limit_req_zone $binary_remote_addr "zone=default_d_rps:5m" rate=1r/s;' in render(alone)
    assert "geo " not in render(alone).split("limit_req_zone")[0].split("proxy_redirect off;")[1]


def test_limit_status_codes_and_global_rate_from_the_configmap() -> None:
    """The ConfigMap keys (tests/test_limits_nginx.py sees limit-conn-status-code answer)."""
    from ingressctl.dataplane.paths import Paths
    from ingressctl.dataplane.render import Renderer
    from ingressctl.translate.options import apply_configmap

    base = run().static.options
    options, errors = apply_configmap(
        base, {"limit-req-status-code": "429", "limit-conn-status-code": "503", "limit-rate": "512"}
    )
    assert errors == [] and (options.limit_req_status_code, options.limit_rate) == (429, 512)
    _, errors = apply_configmap(base, {"limit-req-status-code": "200", "limit-rate": "-1"})
    assert [e.field for e in errors] == ["data.limit-rate", "data.limit-req-status-code"]
    static = dataclasses.replace(run().static, options=options)
    text = Renderer(paths=Paths(work="/w", lua="/l")).render(static).text
    assert "limit_req_status 429;" in text and "limit_rate 512k;" in text
    assert "limit_conn_status" not in text  # 503 is nginx's default: nothing printed


def test_basic_auth_file_holds_only_valid_lines() -> None:
    lines = f"alice:{APR1}:a comment\n# a comment\n\nbob:{{PLAIN}}secret\ncarol\nbad user:{APR1}\nalice:{APR1}\n"
    config = run(
        opaque_secret("users", {"auth": lines}),
        limited("a", "a.example.com", {"auth-type": "basic", "auth-secret": "users", "auth-realm": "Team A"}),
    )
    (file,) = config.static.htpasswd
    assert file.content == f"alice:{APR1}\n".encode()
    assert file.name == hashlib.sha256(b"default/users:auth-file").hexdigest()[:32]  # by its Secret
    auth = server(config, "a.example.com").locations[0].policy.basic_auth
    assert auth == BasicAuth(realm="Team A", secret="users", file=file.name)
    where = 'metadata.annotations["nginx.ingress.kubernetes.io/auth-secret"]: Secret default/users: '
    assert sorted(reasons(config, "a")) == sorted(
        [
            where + "auth line 4: plain-text passwords ({PLAIN}) are refused; line skipped",
            where + "auth line 5: not user:hash; line skipped",
            where + "auth line 6: user name must be 1-128 letters, digits and . _ @ + -; line skipped",
            where + "auth line 7: user alice is listed twice (the first is kept); line skipped",
        ]
    )
    assert all("secret" not in r.split(": ", 1)[1] for r in reasons(config, "a"))  # passwords never echoed
    text = render(config)
    assert 'auth_basic "Team A";' in text
    assert f'auth_basic_user_file "/w/auth/{file.name}.htpasswd";' in text
    assert 'proxy_set_header Authorization "";' in text
    assert text.count("proxy_set_header X-Forwarded-For") == 2  # the location repeats http{}'s set


def test_basic_auth_rejects_the_ingress_when_no_user_is_served() -> None:
    basic = {"auth-type": "basic"}
    config = run(
        opaque_secret("empty", {"auth": "# nobody\n"}),
        opaque_secret("wrong-key", {"users": f"alice:{APR1}\n"}),
        opaque_secret("des", {"bob": "abJnggxhB/yWI"}),
        limited("missing", "missing.example.com", {**basic, "auth-secret": "nothing"}),
        limited("empty", "empty.example.com", {**basic, "auth-secret": "empty"}),
        limited("wrong-key", "wrongkey.example.com", {**basic, "auth-secret": "wrong-key"}),
        limited("des", "des.example.com", {**basic, "auth-secret": "des", "auth-secret-type": "auth-map"}),
        limited("other-ns", "other.example.com", {**basic, "auth-secret": "kube-system/users"}),
        limited("no-secret", "nosecret.example.com", basic),
        limited("digest", "digest.example.com", {"auth-type": "digest", "auth-secret": "basic-auth"}),
        limited("off", "off.example.com", {**basic, "auth-secret": "basic-auth", "auth-realm": "off"}),
        limited("ok", "ok.example.com", {**basic, "auth-secret": "basic-auth", "auth-secret-type": "auth-map"}),
    )
    assert {s.host for s in config.static.servers} == {"ok.example.com"}
    assert [r.name for r in config.ingresses] == ["ok"]
    field = 'metadata.annotations["nginx.ingress.kubernetes.io/'
    expected = {
        "missing": 'auth-secret"]: Secret default/nothing not found; Ingress rejected',
        "empty": 'auth-secret"]: Secret default/empty (auth-file) has no valid user; Ingress rejected',
        "wrong-key": "auth-secret\"]: Secret default/wrong-key (auth-file) has no key 'auth'; Ingress rejected",
        "des": "auth-secret\"]: Secret default/des (auth-map) has no valid user (key 'bob': DES crypt is refused "
        "(it ignores all but the first 8 characters of a password)); Ingress rejected",
        "other-ns": "auth-secret\"]: must be a Secret of the Ingress's own namespace (default), not kube-system; "
        "Ingress rejected",
        "no-secret": 'auth-type"]: needs auth-secret (the users and their password hashes); Ingress rejected',
        "digest": "auth-type\"]: digest authentication is not supported (Debian's nginx has no digest module); "
        "use basic; Ingress rejected",
        "off": "auth-realm\"]: 'off' is not a realm (nginx would switch authentication off); Ingress rejected",
    }
    for name, reason in expected.items():
        assert reasons(config, name) == [field + reason], name


# --- hypothesis: what reaches the htpasswd file ------------------------------------------------------

_B64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SALT = st.text(alphabet=_B64, min_size=1, max_size=8)


@st.composite
def valid_hash(draw: st.DrawFn) -> str:
    """A hash of each accepted scheme's form (the bytes need not match a password to be well-formed)."""
    b64 = st.text(alphabet=_B64, min_size=1, max_size=1)
    kind = draw(st.sampled_from(["sha", "apr1", "md5", "sha256", "sha512", "bcrypt"]))
    if kind == "sha":
        return "{SHA}" + base64.b64encode(draw(st.binary(min_size=20, max_size=20))).decode()
    if kind in ("apr1", "md5"):
        tail = "".join(draw(st.lists(b64, min_size=22, max_size=22)))
        return f"${'apr1' if kind == 'apr1' else '1'}${draw(_SALT)}${tail}"
    if kind in ("sha256", "sha512"):
        tail = "".join(
            draw(st.lists(b64, min_size=43 if kind == "sha256" else 86, max_size=43 if kind == "sha256" else 86))
        )
        rounds = draw(st.sampled_from(["", "rounds=5000$", "rounds=100000$"]))
        return f"${'5' if kind == 'sha256' else '6'}${rounds}{draw(_SALT)}${tail}"
    cost = draw(st.integers(4, 10))
    return f"$2{draw(st.sampled_from('aby'))}${cost:02d}$" + "".join(draw(st.lists(b64, min_size=53, max_size=53)))


_NOISE = st.lists(st.sampled_from([*":$#{}\n\r\t \\\"'./aZ09é\x00", "{SHA}", "$apr1$", "$2y$99$"]), max_size=30).map(
    "".join
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.tuples(st.from_regex(r"[a-z][a-z0-9.]{0,10}", fullmatch=True), valid_hash()).map(":".join),
            _NOISE,
            st.tuples(_NOISE, valid_hash()).map(":".join),
        ),
        max_size=8,
    ),
    mapped=st.booleans(),
)
def test_whatever_a_secret_holds_only_checked_lines_reach_the_file(lines: list[str], mapped: bool) -> None:
    if mapped:
        data = {line.partition(":")[0] or "x": line.partition(":")[2] for line in lines}
        secret = {"data": {k: base64.b64encode(v.encode("utf-8")).decode() for k, v in data.items()}}
    else:
        secret = {"data": {"auth": base64.b64encode("\n".join(lines).encode("utf-8")).decode()}}
    auth = BasicAuth(realm="", secret="s", secret_type="auth-map" if mapped else "auth-file")
    try:
        found = basicauth.users(secret, auth, namespace="default")
    except basicauth.BadAuthSecret:
        return
    text = found.file.content.decode("ascii")
    assert text.endswith("\n")
    names = []
    for line in text.splitlines():
        user, _, hashed = line.partition(":")
        assert basicauth.check_user(user) is None and basicauth.check_hash(hashed) is None, line
        assert re.fullmatch(r"[\x21-\x7e]+", line), line
        names.append(user)
    assert len(names) == len(set(names))


@settings(max_examples=200, deadline=None)
@given(hashed=valid_hash())
def test_every_generated_scheme_form_is_accepted(hashed: str) -> None:
    assert basicauth.check_hash(hashed) is None, hashed


def test_work_factors_are_bounded() -> None:
    tail = "a" * 53
    assert basicauth.check_hash(f"$2y$10${tail}") is None
    assert basicauth.check_hash(f"$2y$11${tail}") == "bcrypt cost must be 4-10"
    assert basicauth.check_hash(f"$2y$31${tail}") == "bcrypt cost must be 4-10"
    sha = subprocess.run(["openssl", "passwd", "-6", "x"], capture_output=True, text=True, check=True).stdout.strip()
    assert basicauth.check_hash(sha) is None
    assert basicauth.check_hash(sha.replace("$6$", "$6$rounds=999999$")) == "sha-crypt rounds must be 1000-100000"
    assert "yescrypt" not in basicauth.SCHEME_NAMES
    assert basicauth.check_hash("$y$j9T$salt$hash").startswith("not a password hash of an accepted scheme")


def test_user_files_are_written_like_certificates(tmp_path: Path) -> None:
    """Content-addressed, 0600, owned by the worker user, no temporary file left; unused ones removed."""
    from ingressctl.config import Htpasswd
    from ingressctl.dataplane import htpasswd
    from ingressctl.dataplane.nginx import Nginx, worker_user
    from ingressctl.dataplane.paths import Paths

    paths = Paths(work=str(tmp_path / "work"), lua="/l", run=str(tmp_path / "run"))
    Nginx(binary="nginx", paths=paths).prepare()
    auth = Path(paths.auth)
    assert stat.S_IMODE(auth.stat().st_mode) == 0o700
    first, second = (
        Htpasswd.of((f"alice:{APR1}",), "default/a:auth-file"),
        Htpasswd.of((f"bob:{APR1}",), "default/b:auth-map"),
    )
    static = dataclasses.replace(run().static, htpasswd=(first, second))
    htpasswd.write(paths, static)
    owner = worker_user()
    for item in (first, second):
        path = Path(paths.htpasswd(item.name))
        assert path.read_bytes() == item.content
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == (owner[1] if owner else os.geteuid())
    assert sorted(p.name for p in auth.iterdir()) == sorted(f"{i.name}.htpasswd" for i in (first, second))
    htpasswd.remove_unused(paths, dataclasses.replace(static, htpasswd=(second,)))
    assert [p.name for p in auth.iterdir()] == [f"{second.name}.htpasswd"]


def test_grpc_backends_do_not_get_the_credentials_either() -> None:
    annotations = {"auth-type": "basic", "auth-secret": "basic-auth", "backend-protocol": "GRPC"}
    annotations["auth-secret-type"] = "auth-map"
    text = render(run(limited("g", "g.example.com", annotations)))
    location = text.split('server_name "g.example.com"')[1].split("\n    }\n")[0]  # its server block
    assert 'grpc_set_header Authorization "";' in location and "auth_basic_user_file" in location


def test_an_opaque_ca_secret_serves_auth_tls_secret() -> None:
    """The cache holds Opaque Secrets (for basic auth): auth-tls-secret reads a generic `ca.crt` Secret,
    as ingress-nginx's docs create it (`kubectl create secret generic ca-secret --from-file=ca.crt`)."""
    from tests.test_auth_translate import CA, TLS, _ca_secret

    config = run(
        _ca_secret("server"),
        opaque_secret("ca-secret", {"ca.crt": CA.decode()}),
        ing("a", "a.example.com", {NGINX + "auth-tls-secret": "ca-secret"}, **TLS),
    )
    client = server(config, "a.example.com").policy.client_auth
    assert client.ca is not None and not client.unusable, config.problems
    assert f"/w/certs/{client.ca}.pem" in render(config)
