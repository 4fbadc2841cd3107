"""Basic authentication through the real controller, real nginx and a real backend on 127.45.3.x:
401 with the realm without or with wrong credentials, 200 with right ones for every accepted hash
scheme (each hash made by the tool users make it with: openssl passwd, libxcrypt, hashlib), refused
lines answer 401 and are reported, a Secret change applies, a missing Secret or one of another
namespace rejects the Ingress (never served open)."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Any

from tests.annotation_backends import echo_pods
from tests.harness import (
    Controller,
    Response,
    backend,
    endpoint_slice,
    free_port,
    ingress,
    opaque_secret,
    request,
    rule,
    service,
    wait_for,
    write_manifests,
)

PORT = free_port()
A = "nginx.ingress.kubernetes.io/"
POD = "127.45.3.1"
PASSWORD = "correct horse"


def openssl(flag: str, password: str = PASSWORD) -> str:
    return subprocess.run(
        ["openssl", "passwd", flag, password], capture_output=True, text=True, check=True
    ).stdout.strip()


def libxcrypt(prefix: str, password: str = PASSWORD) -> str:
    """A hash from the system's crypt library (what htpasswd -B and mkpasswd use)."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = lib.crypt_gensalt(prefix.encode(), 0, None, 0)
    return str(lib.crypt(password.encode(), salt).decode())


def sha(password: str = PASSWORD) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def ssha(password: str = PASSWORD) -> str:
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


ACCEPTED = {
    "sha": sha,
    "ssha": ssha,
    "apr1": lambda: openssl("-apr1"),
    "md5": lambda: openssl("-1"),
    "sha256": lambda: openssl("-5"),
    "sha512": lambda: openssl("-6"),
    "bcrypt2b": lambda: libxcrypt("$2b$"),
    "bcrypt2y": lambda: libxcrypt("$2y$"),
}
REFUSED = {
    "plain": lambda: "{PLAIN}" + PASSWORD,
    "des": lambda: libxcrypt(""),  # traditional DES crypt
    "yescrypt": lambda: libxcrypt("$y$"),
}


def htpasswd(users: dict[str, str]) -> str:
    return "".join(f"{user}:{hashed}\n" for user, hashed in users.items())


def host_ingress(name: str, host: str, annotations: dict[str, str], *, namespace: str = "default") -> dict[str, Any]:
    return ingress(
        name,
        namespace=namespace,
        rules=[rule(host, ("/", "Prefix", backend("echo")))],
        annotations={A + k: v for k, v in annotations.items()},
    )


def get(ctl: Controller, host: str, user: str | None = None, password: str = PASSWORD) -> Response:
    headers = {}
    if user is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    ctl.settle()
    return request(ctl.http_port, host=host, headers=headers)


def test_basic_auth(controller: Controller, manifests: Path) -> None:
    users = {name: make() for name, make in ACCEPTED.items()}
    refused = {name: make() for name, make in REFUSED.items()}
    write_manifests(
        manifests,
        "services.yaml",
        [
            service("echo", target=PORT),
            endpoint_slice("echo", [POD], port=PORT),
            service("echo", target=PORT, namespace="other"),
            endpoint_slice("echo", [POD], port=PORT, namespace="other"),
        ],
    )
    write_manifests(
        manifests,
        "secrets.yaml",
        [
            opaque_secret("file", {"auth": htpasswd(users) + htpasswd(refused) + "no colon here\n"}),
            opaque_secret("map", {"alice": openssl("-apr1", "alice's")}),
            opaque_secret("elsewhere", {"auth": htpasswd(users)}, namespace="other"),
        ],
    )
    basic = {"auth-type": "basic"}
    write_manifests(
        manifests,
        "ingresses.yaml",
        [
            host_ingress("plain", "plain.test", {}),
            host_ingress("file", "file.test", {**basic, "auth-secret": "file", "auth-realm": "Staff only"}),
            host_ingress("map", "map.test", {**basic, "auth-secret": "default/map", "auth-secret-type": "auth-map"}),
            host_ingress("missing", "missing.test", {**basic, "auth-secret": "nothing"}),
            host_ingress("cross", "cross.test", {**basic, "auth-secret": "other/elsewhere"}),
        ],
    )
    with echo_pods((POD, PORT, {})):
        wait_for(lambda: get(controller, "plain.test").status == 200, what="plain.test served")
        wait_for(lambda: get(controller, "file.test").status == 401, what="file.test served")

        # Without credentials, or wrong ones: 401 with the realm.
        for user, password in ((None, PASSWORD), ("apr1", "wrong"), ("nobody", PASSWORD)):
            denied = get(controller, "file.test", user, password)
            assert denied.status == 401, (user, denied.status)
            assert denied.headers["www-authenticate"] == 'Basic realm="Staff only"'
        # Every accepted scheme lets its user in; the backend never sees the credentials.
        for user in ACCEPTED:
            ok = get(controller, "file.test", user)
            assert ok.status == 200, user
            assert "authorization" not in ok.json()["headers"], user
        # Refused lines were skipped (so their users get 401) and reported by line number.
        for user in REFUSED:
            assert get(controller, "file.test", user).status == 401, user
        log = controller.log()
        assert "plain-text passwords ({PLAIN}) are refused; line skipped" in log
        assert "DES crypt is refused" in log and "not user:hash; line skipped" in log
        assert PASSWORD not in log and refused["des"] not in log  # lines are never echoed

        # auth-map: a key per user; the default realm is empty, as in ingress-nginx.
        assert get(controller, "map.test").headers["www-authenticate"] == 'Basic realm=""'
        assert get(controller, "map.test", "alice", "alice's").status == 200
        assert get(controller, "map.test", "alice", PASSWORD).status == 401

        # A missing Secret, or one of another namespace: the Ingress is rejected, never served open.
        assert get(controller, "missing.test").status == 404
        assert get(controller, "cross.test").status == 404
        assert "Secret default/nothing not found; Ingress rejected" in log
        assert "must be a Secret of the Ingress's own namespace (default), not other" in log

        # The user file: 0600, owned by nginx's worker user, named by its Secret.
        used = _user_files(controller)
        assert len(set(used)) == 2, used
        for path in map(Path, used):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert path.stat().st_uid == pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
            assert path.read_text().count("\n") in (1, len(ACCEPTED))

        # Rotation: a new password in the Secret applies, the old one stops working, without a reload:
        # the same file (nginx reads it at each request) gets the new users.
        controller.settle()
        reloads = controller.reloads()
        write_manifests(
            manifests,
            "secrets.yaml",
            [
                opaque_secret("file", {"auth": htpasswd(users)}),
                opaque_secret("map", {"alice": openssl("-6", "rotated")}),
                opaque_secret("elsewhere", {"auth": htpasswd(users)}, namespace="other"),
            ],
        )
        wait_for(lambda: get(controller, "map.test", "alice", "rotated").status == 200, what="new password applies")
        assert get(controller, "map.test", "alice", "alice's").status == 401
        assert get(controller, "file.test", "sha512").status == 200
        assert controller.reloads() == reloads, "a rotated auth Secret must not reload nginx"
        assert _user_files(controller) == used
        assert sorted(p.name for p in Path(used[0]).parent.iterdir()) == sorted({Path(p).name for p in used})

        # The Secret deleted: the Ingress is rejected (404), not served without authentication.
        write_manifests(
            manifests,
            "secrets.yaml",
            [opaque_secret("file", {"auth": htpasswd(users)})],
        )
        wait_for(lambda: get(controller, "map.test").status == 404, what="map.test rejected")
        assert get(controller, "map.test", "alice", "rotated").status == 404
        # The map's file is removed once nothing uses it (after the reload that stopped using it).
        wait_for(lambda: len({Path(p) for p in used if Path(p).exists()}) == 1, what="unused user file removed")


def _user_files(ctl: Controller) -> list[str]:
    conf = (ctl.work_dir / "nginx.conf").read_text()
    return [line.split('"')[1] for line in conf.splitlines() if "auth_basic_user_file" in line]


def test_basic_auth_through_the_api(tmp_path: Path) -> None:
    """From the Kubernetes API (the fake server, the real client): an Opaque auth Secret created after
    its Ingress is fetched (the Ingress is rejected until then), rotation and deletion follow the watch."""
    from tests.fakeapi.threaded import threaded_fake_api
    from tests.harness import ingress_class, running_controller

    with threaded_fake_api(bookmark_interval=1.0) as api, echo_pods(("127.45.3.2", PORT, {})):
        api.create(ingress_class())
        api.create(service("echo", target=PORT))
        api.create(endpoint_slice("echo", ["127.45.3.2"], port=PORT))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")
        (tmp_path / "c").mkdir()
        flags = ["--kubeconfig", str(kubeconfig)]
        with running_controller(tmp_path / "c", None, extra_args=flags, env={"POD_NAMESPACE": "default"}) as ctl:
            api.create(host_ingress("private", "private.test", {"auth-type": "basic", "auth-secret": "users"}))
            api.create(host_ingress("marker", "marker.test", {}))
            wait_for(lambda: get(ctl, "marker.test").status == 200, what="marker served")
            assert get(ctl, "private.test").status == 404  # no Secret yet: rejected, not served open

            api.create(opaque_secret("users", {"auth": htpasswd({"ann": openssl("-apr1", "first")})}))
            wait_for(lambda: get(ctl, "private.test").status == 401, what="Secret fetched")
            assert get(ctl, "private.test", "ann", "first").status == 200

            api.update(opaque_secret("users", {"auth": htpasswd({"ann": openssl("-6", "second")})}))
            wait_for(lambda: get(ctl, "private.test", "ann", "second").status == 200, what="rotation applied")
            assert get(ctl, "private.test", "ann", "first").status == 401

            api.delete("Secret", "default", "users")
            wait_for(lambda: get(ctl, "private.test").status == 404, what="deleted Secret rejects the Ingress")
