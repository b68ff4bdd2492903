"""Whether the Hugging Face hub may and can be used here: the one rule for export and for the data sources.

The environment is read the way the Hugging Face libraries read it, at call time (tests and users change it
after import):

- `HF_HUB_OFFLINE` (huggingface_hub; `TRANSFORMERS_OFFLINE` is its older name, read only when HF_HUB_OFFLINE is
  not set) turns the hub off for models and data sets alike;
- `HF_DATASETS_OFFLINE` (the `datasets` library) decides for data sets only, and when it is set it wins over
  HF_HUB_OFFLINE, as in `datasets.config`;
- `HF_ENDPOINT` (default https://huggingface.co) is where the hub is: its host and port are what is tried.

"Reachable" is one TCP connection to that host and port (through the HTTPS/HTTP proxy of the environment when
one applies to it), with a short timeout: enough to tell "offline" from "online" without a request to the hub.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import urllib.parse
import urllib.request
from dataclasses import dataclass

DEFAULT_ENDPOINT = "https://huggingface.co"
TIMEOUT_S = 3.0
_TRUE = frozenset({"1", "on", "yes", "true"})       # huggingface_hub's ENV_VARS_TRUE_VALUES
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _is_true(value: str | None) -> bool:
    return value is not None and value.lower() in _TRUE


def offline_requested(*, datasets: bool = False) -> bool:
    """True when the environment says not to contact the hub (for data sets when `datasets`)."""
    if datasets and os.environ.get("HF_DATASETS_OFFLINE") is not None:
        return _is_true(os.environ["HF_DATASETS_OFFLINE"])
    return _is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))


@dataclass(frozen=True)
class Address:
    scheme: str     # http | https
    host: str
    port: int


def parse_address(url: str) -> Address | None:
    """An http(s) URL's scheme, host and port (the scheme's default when none is given); None for anything else."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return Address(parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme])


def hub_address() -> Address | None:
    """Where the hub is: HF_ENDPOINT, else the public hub."""
    return parse_address(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)


def connection_target(address: Address) -> tuple[str, int]:
    """Where a connection to `address` really goes: the environment's proxy for its scheme, unless it bypasses
    the host (NO_PROXY)."""
    proxy = urllib.request.getproxies().get(address.scheme)
    if not proxy or urllib.request.proxy_bypass(address.host):
        return address.host, address.port
    through = parse_address(proxy if "://" in proxy else f"http://{proxy}")
    return (through.host, through.port) if through is not None else (address.host, address.port)


def hub_reachable(*, datasets: bool = False, timeout_s: float = TIMEOUT_S) -> bool:
    """The hub may be used (see `offline_requested`) and its endpoint accepts a connection within `timeout_s`."""
    if offline_requested(datasets=datasets):
        return False
    address = hub_address()
    if address is None:
        return False
    try:
        with socket.create_connection(connection_target(address), timeout=timeout_s):
            return True
    except OSError:
        return False


def datasets_installed() -> bool:
    """The Hugging Face `datasets` package is importable (an optional extra: abqa does not depend on it)."""
    return importlib.util.find_spec("datasets") is not None


def datasets_usable() -> bool:
    """A hub data set can be loaded here: `datasets` is installed and the hub is reachable for data sets."""
    return datasets_installed() and hub_reachable(datasets=True)
