"""shared.service: the one start-up of every service (options, stop, clean-up, failure policy)."""

from __future__ import annotations

import asyncio

import click
import pytest
from click.testing import CliRunner

from shared.errors import ServiceUnavailable
from shared.service import (
    CommonSettings,
    ServiceContext,
    ServiceDefinition,
    compute_settings,
    run_service,
    service_command,
)


def test_common_and_own_options_are_split():
    values = {"nats_servers": ("nats://a", "nats://b"), "state_dir": None, "bucket_prefix": "p_",
              "store_replicas": 3, "health_port": 9, "log_level": "DEBUG", "log_format": "TEXT", "otlp_endpoint": None, "workers": 3}
    settings = compute_settings("svc", values)
    assert settings.nats_servers == ("nats://a", "nats://b")
    assert settings.bucket_prefix == "p_" and settings.health_port == 9 and settings.log_format == "text"
    assert settings.store_replicas == 3
    assert dict(settings.params) == {"workers": 3}


def test_nats_credentials_and_ca_come_from_options_or_environment(tmp_path, monkeypatch):
    seen: list[CommonSettings] = []

    async def run(ctx: ServiceContext) -> None:
        seen.append(ctx.settings)

    command = service_command(ServiceDefinition("svc", "test", run))
    result = CliRunner().invoke(command, ["--nats-credentials", str(tmp_path / "svc.json"), "--log-format", "text"])
    assert result.exit_code == 0, result.output
    assert seen[-1].nats_credentials == tmp_path / "svc.json" and seen[-1].nats_ca is None
    monkeypatch.setenv("KUBEVIRT_PY_NATS_CREDENTIALS", str(tmp_path / "env.json"))
    monkeypatch.setenv("KUBEVIRT_PY_NATS_CA", str(tmp_path / "ca.crt"))
    result = CliRunner().invoke(command, ["--log-format", "text"])
    assert result.exit_code == 0, result.output
    assert (seen[-1].nats_credentials, seen[-1].nats_ca) == (tmp_path / "env.json", tmp_path / "ca.crt")
    assert "nats_credentials" not in seen[-1].params


async def test_clean_ups_run_newest_first_once_stopped():
    order: list[str] = []
    stop = asyncio.Event()

    async def run(ctx: ServiceContext) -> None:
        for name in ("store", "agent", "health"):
            async def undo(name: str = name) -> None:
                order.append(name)
            ctx.on_exit(undo)
        ctx.stop.set()
        await ctx.wait_stopped()

    await run_service(ServiceDefinition("svc", "test", run), CommonSettings("svc", ("nats://x",)), stop)
    assert order == ["health", "agent", "store"]


async def test_a_watched_task_that_fails_ends_the_service_with_its_error():
    async def crash() -> None:
        raise ValueError("manager broke")

    async def run(ctx: ServiceContext) -> None:
        await ctx.wait_stopped(ctx.start_task(crash(), "crash"))

    with pytest.raises(ValueError, match="manager broke"):
        await run_service(ServiceDefinition("svc", "test", run), CommonSettings("svc", ("nats://x",)),
                          asyncio.Event())


def test_an_expected_failure_is_one_line_and_exit_code_1(monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    async def run(ctx: ServiceContext) -> None:
        raise ServiceUnavailable("cannot connect to NATS at nats://x")

    command = service_command(ServiceDefinition(
        "svc", "A test service.", run, options=[click.option("--workers", default=1)]))
    result = CliRunner().invoke(command, ["--nats", "nats://x", "--workers", "2", "--log-format", "text"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "svc: cannot connect to NATS at nats://x"
    assert "Traceback" not in result.output


def test_help_lists_the_common_options_first():
    async def run(ctx: ServiceContext) -> None:  # pragma: no cover - never run
        return None

    result = CliRunner().invoke(service_command(ServiceDefinition(
        "svc", "A test service.", run, options=[click.option("--workers", default=1)])), ["--help"])
    assert result.exit_code == 0
    text = result.output
    for option in ("--nats", "--state-dir", "--bucket-prefix", "--store-replicas", "--health-port", "--log-level", "--log-format",
                   "--otlp-endpoint", "--workers"):
        assert option in text
    assert text.index("--nats") < text.index("--workers")


@pytest.mark.parametrize(("argv", "expected"), [([], 1), (["--store-replicas", "3"], 3)])
def test_store_replicas_option(monkeypatch, argv, expected):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    seen: list[int] = []

    async def run(ctx: ServiceContext) -> None:
        seen.append(ctx.settings.store_replicas)

    result = CliRunner().invoke(service_command(ServiceDefinition("svc", "A test service.", run)),
                                ["--nats", "nats://x", "--log-format", "text", *argv])
    assert result.exit_code == 0, result.output
    assert seen == [expected]


def test_store_replicas_outside_1_to_5_is_a_usage_error():
    async def run(ctx: ServiceContext) -> None:  # pragma: no cover - never run
        return None

    result = CliRunner().invoke(service_command(ServiceDefinition("svc", "A test service.", run)),
                                ["--store-replicas", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--store-replicas'" in result.output
