"""The container image recipe (Dockerfile, .dockerignore), checked without a Docker engine: what it
copies exists and reaches the build context, and it agrees with the package, the CLI and the
Deployment in deploy/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import ingressctl

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"

PACKAGES = ROOT / "image" / "packages.txt"
BUILD_ROOTFS = ROOT / "image" / "build-rootfs.sh"

# The data plane the tests run against, which the image must carry too (issue 4).
DATA_PLANE = {"nginx", "libnginx-mod-http-lua", "lua-resty-core", "lua-resty-lrucache", "lua-cjson"}


def listed_packages() -> dict[str, set[str]]:
    """image/packages.txt: `<stage> <package>` lines by stage."""
    stages: dict[str, set[str]] = {}
    for line in PACKAGES.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            stage, package = line.split()
            stages.setdefault(stage, set()).add(package)
    return stages


def awk_selected(run: str) -> set[str]:
    """The packages a RUN's `$(awk '$1 == "<stage>" { print $2 }' <file>)` installs."""
    (stage,) = re.findall(r"""\$\(awk '\$1 == "(\w+)" \{ print \$2 \}' /tmp/packages\.txt\)""", run)
    return listed_packages()[stage]


@dataclass(frozen=True)
class Instruction:
    stage: int
    name: str
    value: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    result: list[Instruction] = []
    stage = -1
    for line in text.splitlines():
        if not line.strip():
            continue
        name, _, value = line.strip().partition(" ")
        if name.upper() == "FROM":
            stage += 1
        result.append(Instruction(stage, name.upper(), " ".join(value.split())))
    return result


def runtime(name: str) -> list[str]:
    """Values of one instruction in the last (runtime) stage."""
    all_ = instructions()
    last = max(i.stage for i in all_)
    return [i.value for i in all_ if i.stage == last and i.name == name]


def key_values(values: list[str]) -> dict[str, str]:
    """ENV / LABEL / ARG `k=v` pairs (shell-quoted values allowed)."""
    pairs: dict[str, str] = {}
    for value in values:
        for word in shlex.split(value):
            key, _, v = word.partition("=")
            pairs[key] = v
    return pairs


def copies() -> list[tuple[list[str], str, str | None]]:
    """COPY instructions as (sources, destination, --from stage or None)."""
    found = []
    for i in instructions():
        if i.name != "COPY":
            continue
        words = i.value.split()
        options = {w.split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--")}
        paths = [w for w in words if not w.startswith("--")]
        found.append((paths[:-1], paths[-1], options.get("--from")))
    return found


def deployment() -> dict[str, Any]:
    with (ROOT / "deploy" / "deployment.yaml").open() as f:
        return dict(yaml.safe_load(f))


def dockerignore_excludes(relpath: str) -> bool:
    """Docker's .dockerignore rules: patterns in order, the last match wins, `!` re-includes; a
    pattern matching a parent directory matches everything below it."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = relpath.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if any(regex(pattern).fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    local = [(sources, dest) for sources, dest, stage in copies() if stage is None]
    assert local
    for sources, _ in local:
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such path in the repository"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            files = [f for f in files if "__pycache__" not in f.parts]
            assert files, f"COPY {source}: nothing to copy"
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(rel), f"{rel} is copied but .dockerignore excludes it"


def test_dockerignore_keeps_the_context_small() -> None:
    for rel in (
        "tests/test_deploy.py",
        "deploy/deployment.yaml",
        ".git/HEAD",
        "ingressctl/__pycache__/x.pyc",
    ):
        assert dockerignore_excludes(rel), rel


def test_data_trees_are_where_the_controller_is_told_to_look() -> None:
    env = key_values(runtime("ENV"))
    destinations = {sources[0].rstrip("/"): dest.rstrip("/") for sources, dest, stage in copies() if stage is None}
    assert env["INGRESSCTL_TEMPLATES_DIR"] == destinations["templates"] == "/app/templates"
    assert env["INGRESSCTL_LUA_DIR"] == destinations["lua"] == "/app/lua"
    assert (ROOT / "templates" / "nginx.conf.j2").is_file()
    assert list((ROOT / "lua").rglob("*.lua"))


def test_every_package_is_installed() -> None:
    # The image pip-installs the project: a subpackage missing from [tool.setuptools] packages
    # would be missing from the image while the tests (run from the source tree) pass.
    with (ROOT / "pyproject.toml").open("rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ingressctl").rglob("__init__.py")}
    assert listed == on_disk


def test_entrypoint_is_tini_then_the_console_script() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"] == {"ingressctl": "ingressctl.cli:main"}
    (entrypoint,) = runtime("ENTRYPOINT")
    (cmd,) = runtime("CMD")
    # Exec form (JSON): no shell at run time. No `tini -g`: SIGTERM goes to the controller alone,
    # which then stops nginx gracefully.
    assert json.loads(entrypoint) == ["/usr/bin/tini", "--", "/opt/ingressctl/bin/ingressctl"]
    assert json.loads(cmd) == ["run"]
    assert deployment()["spec"]["template"]["spec"]["containers"][0]["args"][0] == "run"
    assert any(src == ["/opt/ingressctl"] and dest == "/opt/ingressctl" for src, dest, _ in copies())


def test_build_and_runtime_stages_share_the_debian_13_base() -> None:
    # The venv's python is a symlink to Debian's /usr/bin/python3, so both stages use the same one.
    froms = [i.value for i in instructions() if i.name == "FROM"]
    assert [f.split()[0] for f in froms] == ["${DEBIAN_IMAGE}", "${DEBIAN_IMAGE}"]
    args = key_values([i.value for i in instructions() if i.name == "ARG" and i.stage == -1])
    assert args["DEBIAN_IMAGE"] == "debian:trixie-slim"
    assert "trixie" in BUILD_ROOTFS.read_text().split("suite=", 1)[1].split()[0]


def test_dockerfile_and_rootfs_install_the_one_package_list() -> None:
    stages = listed_packages()
    assert set(stages) == {"build", "runtime"}
    # Each stage installs its own list, read from the file the Dockerfile copies in first.
    for stage, name in ((0, "build"), (1, "runtime")):
        in_stage = [i for i in instructions() if i.stage == stage]
        (install,) = [i.value for i in in_stage if i.name == "RUN" and "apt-get install" in i.value]
        assert awk_selected(install) == stages[name]
        copied = [i.value for i in in_stage if i.name == "COPY"]
        assert "image/packages.txt /tmp/packages.txt" in copied
    # The rootfs builder installs both stages' packages (it builds the venv in place) from that file.
    script = BUILD_ROOTFS.read_text()
    assert """awk '$1 == "build" || $1 == "runtime" { print $2 }' "$repo/image/packages.txt\"""" in script
    assert '--include="$packages"' in script
    assert not dockerignore_excludes("image/packages.txt")
    # The venv needs Debian's python in both stages.
    assert {"python3", "python3-venv"} <= stages["build"] and "python3" in stages["runtime"]


def test_runtime_packages_are_the_tested_data_plane_and_tini() -> None:
    (install,) = [r for r in runtime("RUN") if "apt-get install" in r]
    assert awk_selected(install) == DATA_PLANE | {"tini", "python3"}
    # ... the same Debian packages `make test` installs for the test suite.
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    (apt,) = re.findall(r"^APT_PACKAGES\s*:?=(.*)$", makefile, re.MULTILINE)
    assert set(apt.split()) >= DATA_PLANE
    assert "rm -rf /var/lib/apt/lists/*" in install


def test_runs_as_the_deployments_non_root_user_with_a_writable_work_dir() -> None:
    (user,) = runtime("USER")
    pod = deployment()["spec"]["template"]["spec"]
    assert user == f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == "101:101"
    env = key_values(runtime("ENV"))
    args = dict(a.split("=", 1) for a in pod["containers"][0]["args"][1:])
    assert env["INGRESSCTL_WORK_DIR"] == args["--work-dir"] == "/var/run/ingressctl"
    assert env["HOME"] == env["INGRESSCTL_WORK_DIR"]
    (install,) = [r for r in runtime("RUN") if "apt-get install" in r]
    assert f"install -d -o 101 -g 101 -m 0700 {env['INGRESSCTL_WORK_DIR']}" in install
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "the root filesystem is read-only"


def test_image_defaults_match_the_deployment_ports() -> None:
    container = deployment()["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = key_values(runtime("ENV"))
    assert int(env["INGRESSCTL_HTTP_PORT"]) == ports["http"]
    assert int(env["INGRESSCTL_HTTPS_PORT"]) == ports["https"]
    (expose,) = runtime("EXPOSE")
    assert {int(p) for p in expose.split()} == set(ports.values())


def test_image_environment_configures_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI reads INGRESSCTL_<FLAG> as the default of --<flag>; the data dirs are env-only.
    for key in list(os.environ):
        if key.startswith("INGRESSCTL_"):
            monkeypatch.delenv(key)
    env = key_values(runtime("ENV"))
    for key, value in env.items():
        if key.startswith("INGRESSCTL_"):
            monkeypatch.setenv(key, value)
    from ingressctl.cli import build_parser
    from ingressctl.dataplane.paths import lua_dir, templates_dir

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {o for action in commands.choices["run"]._actions for o in action.option_strings}
    for key in env:
        if key.startswith("INGRESSCTL_") and key not in {"INGRESSCTL_TEMPLATES_DIR", "INGRESSCTL_LUA_DIR"}:
            flag = "--" + key.removeprefix("INGRESSCTL_").lower().replace("_", "-")
            assert flag in flags, f"{key} is not the env var of a flag of `ingressctl run`"
    args = parser.parse_args(["run"])
    assert (args.http_port, args.https_port) == (8080, 8443)
    assert args.work_dir == "/var/run/ingressctl"
    assert args.nginx_binary == "/usr/sbin/nginx"
    assert (templates_dir(), lua_dir()) == (Path("/app/templates"), Path("/app/lua"))


def test_labels_carry_source_and_the_package_version() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    args = key_values(runtime("ARG"))
    assert args["VERSION"] == version == ingressctl.__version__
    assert args["SOURCE"].startswith("https://")
    labels = key_values(runtime("LABEL"))
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.source"] == "${SOURCE}"
    image = deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{version}")
