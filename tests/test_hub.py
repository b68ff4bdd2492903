"""The one hub-reachability rule (abqa.core.hub): the environment variables as the Hugging Face libraries read
them, HF_ENDPOINT's host and port, the proxy. No network: every connection attempt is recorded and answered here."""

from __future__ import annotations

import contextlib

import pytest

from abqa.core import hub

ENVIRONMENT = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT",
               "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
               "no_proxy", "NO_PROXY")


class Connections:
    """The (host, port) and timeout of each attempted connection; `accept` says whether it succeeds."""

    def __init__(self) -> None:
        self.attempts: list[tuple[tuple[str, int], float]] = []
        self.accept = True

    def create_connection(self, address, timeout=None):
        self.attempts.append((tuple(address), timeout))
        if not self.accept:
            raise ConnectionRefusedError(111, "Connection refused")
        return contextlib.nullcontext()


@pytest.fixture
def connections(monkeypatch) -> Connections:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    fake = Connections()
    monkeypatch.setattr(hub.socket, "create_connection", fake.create_connection)
    return fake


def test_the_public_hub_by_default_with_a_short_timeout(connections):
    assert hub.hub_reachable() is True
    assert connections.attempts == [(("huggingface.co", 443), hub.TIMEOUT_S)]
    assert hub.TIMEOUT_S <= 5
    connections.accept = False
    assert hub.hub_reachable() is False


@pytest.mark.parametrize("endpoint, address", [
    ("https://hf-mirror.example", ("hf-mirror.example", 443)),
    ("http://mirror.local:8080/", ("mirror.local", 8080)),
    ("http://127.0.0.1", ("127.0.0.1", 80)),
])
def test_hf_endpoint_gives_host_and_port(connections, monkeypatch, endpoint, address):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert hub.hub_reachable(timeout_s=0.5) is True
    assert connections.attempts == [(address, 0.5)]


@pytest.mark.parametrize("endpoint", ["ftp://files.example", "not a url", "http://host:port"])
def test_an_endpoint_that_is_not_http_is_unreachable_without_trying(connections, monkeypatch, endpoint):
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert hub.hub_reachable() is False and connections.attempts == []


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("YES", True), ("on", True),
                                            ("0", False), ("", False), ("off", False)])
def test_hf_hub_offline_values(connections, monkeypatch, value, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.offline_requested() is offline
    assert hub.hub_reachable() is (not offline)
    assert len(connections.attempts) == (0 if offline else 1)


def test_transformers_offline_is_the_older_name_and_hf_hub_offline_wins(connections, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hub.offline_requested() and hub.offline_requested(datasets=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # set: huggingface_hub reads it and not TRANSFORMERS_OFFLINE
    assert not hub.offline_requested()


def test_hf_datasets_offline_decides_for_data_sets_only(connections, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.hub_reachable(datasets=True) is False and connections.attempts == []
    assert hub.hub_reachable() is True                    # models: HF_DATASETS_OFFLINE does not apply
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.offline_requested(datasets=True) is False  # set, it wins for data sets (datasets.config)
    assert hub.offline_requested() is True


def test_the_environment_proxy_is_where_the_connection_goes(connections, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    assert hub.hub_reachable() is True
    assert connections.attempts[-1][0] == ("proxy.local", 3128)
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert hub.hub_reachable() is True
    assert connections.attempts[-1][0] == ("huggingface.co", 443)


def test_hub_data_sets_need_the_package_and_the_hub(connections, monkeypatch):
    monkeypatch.setattr(hub, "datasets_installed", lambda: False)
    assert hub.datasets_usable() is False and connections.attempts == []
    monkeypatch.setattr(hub, "datasets_installed", lambda: True)
    assert hub.datasets_usable() is True
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.datasets_usable() is False and len(connections.attempts) == 1


def test_export_takes_stand_ins_by_the_same_rule(connections, monkeypatch, tmp_path):
    """`abqa export` asks this module too: TRANSFORMERS_OFFLINE=1 (HF_HUB_OFFLINE's older name) means stand-ins."""
    from abqa.core.config import ArmSpec
    from abqa.export import sources

    built = []
    monkeypatch.setattr(sources, "build_standin_checkpoint",
                        lambda architecture, out, seed=0, config_overrides=None: built.append(architecture) or out)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    resolved = sources.resolve_checkpoint(ArmSpec("bert", "google-bert/bert-base-uncased"), tmp_path, offline=False)
    assert resolved.standin and resolved.source_kind == "standin" and built == ["bert"]
    assert connections.attempts == []
