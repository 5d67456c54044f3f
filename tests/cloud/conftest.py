from __future__ import annotations

import pytest
from cli_harness import cli, runner

from bastion.coverage.attack import ensure_default_catalog

__all__ = ["cli", "runner"]  # the CLI fixtures, for the tests of this folder


@pytest.fixture
def aws_env(monkeypatch):
    """Credentials and a region for moto; nothing of the developer's AWS setup."""
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL",
                 "AWS_SESSION_TOKEN", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.fixture
def attack(store, tenant):
    """The tenant with the default ATT&CK Enterprise catalog (v19) active."""
    ensure_default_catalog(store, actor="tester")
    return tenant
