"""Both nginx generations: the version is read once from `nginx -V` and the rendered configuration
uses the directive forms that version wants (nginx 1.25.1 deprecated `listen ... http2` for
`http2 on;`), so it loads warning-free on Debian 12's 1.22 and on Debian 13's 1.26 (tests/test_rootfs.py
runs the image's nginx). Here: the parsing, both forms, the host's real nginx, and proof that the
forms are not interchangeable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingressctl.dataplane.version import OLDEST, NginxVersion, UnknownVersion, detect, parse
from tests.harness import REPO, backend, ingress, ingress_class, rule, running_controller, service, write_manifests

DEBIAN_12 = """nginx version: nginx/1.22.1
built with OpenSSL 3.0.11 19 Sep 2023
TLS SNI support enabled
configure arguments: --with-cc-opt='-g -O2' --prefix=/usr/share/nginx --with-http_v2_module
"""


@pytest.mark.parametrize(
    ("output", "version", "directive"),
    [
        (DEBIAN_12, NginxVersion(1, 22, 1), False),
        ("nginx version: nginx/1.24.0 (Ubuntu)\n", NginxVersion(1, 24, 0), False),
        ("nginx version: nginx/1.25.0\n", NginxVersion(1, 25, 0), False),
        ("nginx version: nginx/1.25.1\n", NginxVersion(1, 25, 1), True),
        ("nginx version: nginx/1.26.3\nbuilt with OpenSSL 3.5.1\n", NginxVersion(1, 26, 3), True),
        ("nginx version: openresty/1.27.1.2\n", NginxVersion(1, 27, 1), True),
    ],
)
def test_version_from_nginx_v(output: str, version: NginxVersion, directive: bool) -> None:
    assert parse(output) == version
    assert version.http2_directive is directive
    assert str(version) == f"{version.major}.{version.minor}.{version.patch}"


def test_no_version_is_an_error_not_a_guess(tmp_path: Path) -> None:
    with pytest.raises(UnknownVersion):
        parse("nginx: invalid option: V\n")
    with pytest.raises(UnknownVersion):
        detect(str(tmp_path / "missing-nginx"))


def test_detects_the_host_nginx_directly_and_through_a_wrapper(tmp_path: Path) -> None:
    nginx = shutil.which("nginx")
    assert nginx, "nginx is not installed"
    version = detect(nginx)
    short = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=True).stderr
    assert version == parse(short)
    # --nginx-binary may be a wrapper (e.g. `exec chroot DIR /usr/sbin/nginx "$@"`).
    wrapper = tmp_path / "nginx-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {nginx} "$@"\n')
    wrapper.chmod(0o755)
    assert detect(str(wrapper)) == version


def render(manifests: Path, *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ingressctl", "render", "--manifests", str(manifests), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write_manifests(
        folder,
        "web.yaml",
        [
            ingress_class(),
            service("web"),
            ingress("web", rules=[rule("a.example.com", ("/", "Prefix", backend("web")))]),
        ],
    )
    return folder


def https_listens(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("listen") and " ssl" in line]


def rest(text: str) -> list[str]:
    """The text without its http2 forms, and without the digest (of the whole text; the default
    certificate's name differs from one render to the next too)."""
    return [
        re.sub(r"[0-9a-f]{16,}", "<hex>", line.replace(" ssl http2", " ssl").replace('" http2;', '";'))
        for line in text.splitlines()
        if "http2 on;" not in line
    ]


def test_both_forms(manifests: Path) -> None:
    old = render(manifests)  # default: the oldest supported nginx
    assert rest(render(manifests, "--nginx-version", str(OLDEST))) == rest(old)
    new = render(manifests, "--nginx-version", "1.26.3")
    assert https_listens(old) and all(" ssl http2" in line for line in https_listens(old))
    assert "http2 on;" not in old
    assert https_listens(new) and not any("http2" in line for line in https_listens(new))
    assert new.count("http2 on;") == 1  # once, at http{} level

    # Nothing else differs.
    assert rest(old) == rest(new)


def test_the_host_nginx_gets_its_form_warning_free_and_refuses_the_other(tmp_path: Path, manifests: Path) -> None:
    nginx = shutil.which("nginx")
    assert nginx, "nginx is not installed"
    version = detect(nginx)
    with running_controller(tmp_path, manifests) as ctl:
        assert ctl.get("a.example.com").status in (502, 503)  # no endpoints: served by nginx, not refused
        conf = (ctl.work_dir / "nginx.conf").read_text()
        assert ("http2 on;" in conf) is version.http2_directive
        assert ("ssl http2" in conf) is not version.http2_directive
        test = subprocess.run(
            [nginx, "-t", "-p", str(ctl.work_dir), "-c", str(ctl.work_dir / "nginx.conf")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert test.returncode == 0, test.stderr
        assert "[warn]" not in test.stderr, test.stderr
        assert "[warn]" not in ctl.log() and "[emerg]" not in ctl.log(), ctl.log()
        # The other form: an unknown directive before 1.25.1, a warning per listen line after.
        other = ctl.work_dir / "nginx.other.conf"
        if version.http2_directive:
            other.write_text(conf.replace("http2 on;", "").replace(" ssl", " ssl http2"))
        else:
            other.write_text(
                conf.replace(" ssl http2", " ssl").replace("server_tokens off;", "server_tokens off; http2 on;")
            )
        test = subprocess.run(
            [nginx, "-t", "-p", str(ctl.work_dir), "-c", str(other)], capture_output=True, text=True, check=False
        )
        if version.http2_directive:
            assert 'the "listen ... http2" directive is deprecated' in test.stderr
        else:
            assert test.returncode != 0 and 'unknown directive "http2"' in test.stderr, test.stderr
