"""Shared fixtures: a manifests folder with our IngressClass, and a running controller on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from crossplane.builder import register_external_builder
from crossplane.ext.lua import LuaBlockPlugin
from crossplane.lexer import register_external_lexer

from tests.harness import Controller, ingress_class, running_controller, write_manifests
from tests.timing import Lag

# crossplane's Lua extension predates ssl_client_hello_by_lua_block (templates/tls.j2, lua-nginx-module
# 0.10.21): its lexer is taught the block like the other *_by_lua_block ones, so the parse tests read
# the Lua inside as Lua, not as nginx directives.
_LUA = LuaBlockPlugin()
register_external_lexer(directives={"ssl_client_hello_by_lua_block": []}, lexer=_LUA.lex)
register_external_builder(directives={"ssl_client_hello_by_lua_block": []}, builder=_LUA.build)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    write_manifests(folder, "class.yaml", [ingress_class()])
    return folder


@pytest.fixture
def lag() -> Iterator[Lag]:
    """Wall-clock limits checked through lag.within(): skipped, saying why, on a loaded machine."""
    with Lag() as probe:
        yield probe


@pytest.fixture
def controller(tmp_path: Path, manifests: Path) -> Iterator[Controller]:
    with running_controller(tmp_path, manifests) as ctl:
        yield ctl
