"""Structural checks for compose.yaml, nats/jetstream.conf and the Dockerfile (no Docker needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ("nats", "postgres", "redis")
APPS = ("migrate", "gateway", "worker")
URL_VARS = ("ECHONATS_NATS_URL", "ECHONATS_DATABASE_URL", "ECHONATS_REDIS_URL")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    svcs = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert isinstance(svcs, dict)
    return svcs


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _container_ports(svc: dict[str, Any]) -> set[int]:
    ports: set[int] = {int(str(p).split("/")[0]) for p in svc.get("expose", [])}
    for entry in svc.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).split(":")[-1]
        ports.add(int(str(target).split("/")[0]))
    return ports


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    specs = [v if isinstance(v, dict) else str(v).split(":") for v in svc.get("volumes", [])]
    return [(str(v["source"]), str(v["target"])) if isinstance(v, dict) else (v[0], v[1]) for v in specs]


def _command(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _conf_text() -> str:
    lines = (ROOT / "nats" / "jetstream.conf").read_text().splitlines()
    return "\n".join(line.split("#", 1)[0] for line in lines)


def test_required_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(INFRA + APPS) <= set(services)


@pytest.mark.parametrize("name", INFRA)
def test_infra_images_pinned(services: dict[str, dict[str, Any]], name: str) -> None:
    image = str(services[name]["image"])
    sep, tag = image.rpartition(":")[1:]
    assert sep, f"{name}: image {image!r} has no tag"
    assert "/" not in tag
    assert tag != "latest"
    assert re.match(r"^\d", tag), f"{name}: tag {tag!r} should start with a version"


@pytest.mark.parametrize("name", APPS)
def test_apps_are_built(services: dict[str, dict[str, Any]], name: str) -> None:
    assert services[name].get("build") == "."
    assert _command(services[name]) == ["echonats", name]


def test_published_ports(services: dict[str, dict[str, Any]]) -> None:
    assert 8080 in _container_ports(services["gateway"])
    assert "8080:8080" in [str(p) for p in services["gateway"]["ports"]]
    assert 4222 in _container_ports(services["nats"])


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    missing = [n for n, s in services.items() if n != "migrate" and not s.get("healthcheck", {}).get("test")]
    assert missing == []
    assert "healthcheck" not in services["migrate"]
    assert services["migrate"].get("restart") == "no"


@pytest.mark.parametrize("name", APPS)
def test_env_urls_point_at_services(services: dict[str, dict[str, Any]], name: str) -> None:
    env = _env(services[name])
    for var in URL_VARS if name != "migrate" else ("ECHONATS_DATABASE_URL",):
        url = urlsplit(env[var])
        assert url.hostname in services, f"{name}: {var} host {url.hostname!r} is not a service"
        assert url.port is not None
        assert url.port in _container_ports(services[url.hostname]), f"{name}: {var} port mismatch"


def test_depends_on_conditions(services: dict[str, dict[str, Any]]) -> None:
    expected = {"gateway": {*INFRA, "migrate"}, "worker": {*INFRA, "migrate"}, "migrate": {"postgres"}}
    for name, deps in expected.items():
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: use long-form depends_on with conditions"
        assert set(depends) == deps
        for dep, spec in depends.items():
            want = "service_completed_successfully" if dep == "migrate" else "service_healthy"
            assert spec["condition"] == want, f"{name} -> {dep}"
            if want == "service_healthy":
                assert "healthcheck" in services[dep]


def test_bind_mounts_exist(services: dict[str, dict[str, Any]]) -> None:
    sources = [src for svc in services.values() for src, _ in _mounts(svc) if src.startswith("./")]
    assert "./nats/jetstream.conf" in sources
    for src in sources:
        assert (ROOT / src).is_file(), f"bind mount source {src} missing"


def test_nats_command_uses_mounted_config(services: dict[str, dict[str, Any]]) -> None:
    cmd = _command(services["nats"])
    flag = next(i for i, arg in enumerate(cmd) if arg in ("-c", "--config"))
    mounts = dict((dst, src) for src, dst in _mounts(services["nats"]))
    assert mounts.get(cmd[flag + 1]) == "./nats/jetstream.conf"


def test_jetstream_store_dir(services: dict[str, dict[str, Any]]) -> None:
    block = re.search(r"^\s*jetstream\s*[:=]?\s*\{([^}]*)\}", _conf_text(), re.MULTILINE)
    assert block is not None, "no jetstream { ... } block"
    store = re.search(r"store_dir\s*[:=]?\s*\"?([^\"\s]+)", block.group(1))
    assert store is not None, "jetstream block lacks store_dir"
    cmd = _command(services["nats"])
    assert not {"-sd", "--store_dir"} & set(cmd), "store_dir set in config; -sd would make nats exit"
    volume_targets = [dst for src, dst in _mounts(services["nats"]) if not src.startswith("./")]
    assert any(store.group(1).startswith(t.rstrip("/") + "/") for t in volume_targets)


def test_nats_conf_ports_match_compose(services: dict[str, dict[str, Any]]) -> None:
    conf = _conf_text()
    top = {k: int(v) for k, v in re.findall(r"^(port|http)\s*[:=]\s*(\d+)", conf, re.MULTILINE)}
    ws = re.search(r"^websocket\s*[:=]?\s*\{[^}]*\bport\s*[:=]\s*(\d+)", conf, re.MULTILINE)
    assert ws is not None, "no websocket { port: ... } block"
    assert top == {"port": 4222, "http": 8222}
    assert urlsplit(_env(services["gateway"])["ECHONATS_NATS_URL"]).port == top["port"]
    assert {top["port"], top["http"], int(ws.group(1))} <= _container_ports(services["nats"])
    assert re.search(r"^\s*server_name\s*[:=]\s*echonats-nats-1", conf, re.MULTILINE)


def test_dockerfile_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^\s*USER\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
    assert users, "Dockerfile has no USER line"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^FROM\s+python:3\.12-slim", text, re.MULTILINE)
    assert "pip install --no-cache-dir ." in text
