from __future__ import annotations

from pathlib import Path

import pytest

from echonats.cli import config_table
from echonats.model.errors import ConfigError
from echonats.settings import load_settings, variables


def test_defaults_without_environment() -> None:
    settings = load_settings({})
    assert settings.gateway.port == 8080
    assert settings.gateway.host == "127.0.0.1"
    assert settings.nats.url is None
    assert settings.auth.tenant_claim == "tenant_id"
    assert settings.auth.roles_claim == "realm_access.roles"


def test_values_are_parsed_and_grouped() -> None:
    settings = load_settings(
        {
            "ECHONATS_GATEWAY_PORT": "9000",
            "ECHONATS_NATS_URL": "nats://a:4222,nats://b:4222",
            "ECHONATS_DATABASE_URL": "postgresql://u:p@db:5432/x",
            "ECHONATS_REDIS_URL": "redis://r:6379/0",
            "ECHONATS_READY_TIMEOUT": "0.5",
            "ECHONATS_LOG_FORMAT": "text",
        }
    )
    assert settings.gateway.port == 9000
    assert settings.gateway.ready_timeout_s == 0.5
    assert settings.log.format == "text"
    assert settings.require_service_urls() == (
        "nats://a:4222,nats://b:4222",
        "postgresql://u:p@db:5432/x",
        "redis://r:6379/0",
    )


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("ECHONATS_GATEWAY_PORT", "abc", "expected an integer"),
        ("ECHONATS_GATEWAY_PORT", "70000", "must be <= 65535"),
        ("ECHONATS_READY_TIMEOUT", "soon", "expected a number"),
        ("ECHONATS_LOG_LEVEL", "LOUD", "must be one of"),
        ("ECHONATS_NATS_URL", "http://x:4222", "expected a URL with scheme"),
        ("ECHONATS_DATABASE_URL", "mysql://x/db", "expected a URL with scheme"),
        ("ECHONATS_JWT_SECRET", "short", "at least 32 characters"),
        ("ECHONATS_GATEWAY_PROT", "8080", "unknown variable"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert caught.value.message.startswith(f"{variable}: ")
    assert fragment in caught.value.message
    assert "\n" not in caught.value.message


def test_password_in_bad_url_is_redacted() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"ECHONATS_DATABASE_URL": "mysql://user:hunter2@db/x"})
    assert "hunter2" not in caught.value.message


def test_cross_field_pool_bounds() -> None:
    with pytest.raises(ConfigError, match="ECHONATS_DATABASE_POOL_MIN"):
        load_settings({"ECHONATS_DATABASE_POOL_MIN": "20", "ECHONATS_DATABASE_POOL_MAX": "5"})


def test_missing_service_url_is_named() -> None:
    settings = load_settings({"ECHONATS_NATS_URL": "nats://n:4222"})
    with pytest.raises(ConfigError, match=r"^ECHONATS_DATABASE_URL: required"):
        settings.require_service_urls()


def test_variable_names_are_unique_and_prefixed() -> None:
    names = [v.name for v in variables()]
    assert len(names) == len(set(names))
    assert all(name.startswith("ECHONATS_") for name in names)


def test_readme_configuration_table_is_current() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- config-table:start")
    table = readme[readme.index("\n", start) + 1 : readme.index("<!-- config-table:end -->")].strip()
    assert table == config_table(markdown=True)


@pytest.mark.parametrize("origins", ["*", "localhost:4200", "http://localhost:4200/app", "ftp://x.example"])
def test_cors_origins_must_be_exact_origins(origins: str) -> None:
    settings = load_settings({"ECHONATS_CORS_ORIGINS": origins})
    with pytest.raises(ConfigError, match="ECHONATS_CORS_ORIGINS"):
        _ = settings.gateway.cors_origin_list


def test_cors_origins_are_trimmed_and_listed() -> None:
    settings = load_settings(
        {"ECHONATS_CORS_ORIGINS": " http://localhost:4200/ ,https://chat.example.com:8443"}
    )
    assert settings.gateway.cors_origin_list == ["http://localhost:4200", "https://chat.example.com:8443"]
