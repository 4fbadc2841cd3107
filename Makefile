# ingressctl: `make demo` runs the local example, `make test` runs every test.
# Both install what is missing first (Debian/Ubuntu packages, a virtualenv), as root or with sudo.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := nginx libnginx-mod-http-lua lua-resty-core lua-resty-lrucache lua-cjson \
	openssl curl wrk shellcheck python3 python3-venv python3-pip
# Installed when the distribution has it (Debian does): makes the `kubectl kustomize` check run.
APT_OPTIONAL := kubectl
STAMP := $(VENV)/.installed
ROOTFS ?= build/rootfs
# As root (CI is), `make test` builds the image's filesystem first and runs the controller inside it.
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: all deps venv demo test lint unit bench clean rootfs

all: test

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@for p in $(APT_OPTIONAL); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' && continue; \
	  if apt-cache show $$p >/dev/null 2>&1; then \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p || true; \
	  fi; \
	done

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: deps $(STAMP)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(PY) -m pytest -q -m 'not slow'

test: venv lint $(if $(IS_ROOT),rootfs)
	$(PY) -m pytest -q -p no:cacheprovider

demo: venv
	$(PY) demo/hostnames/run.py

# The image's filesystem (Debian 13) in $(ROOTFS), without Docker; cached, needs root.
rootfs:
	image/build-rootfs.sh $(ROOTFS)

bench: venv $(if $(IS_ROOT),rootfs)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
