"""The demo's values: what it was asked to do, what it found, and where it reads its defaults.

Below both the demo's run (``__init__``) and its printed report (``_report``), which read
them, so that neither imports the other for a type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTCOMES = ("created", "patched", "coalesced", "dropped", "failed")
"""The final outcomes of an occurrence in ``stats()``."""

_PACKAGE = Path(__file__).resolve().parent.parent
_SHIPPED_CONFIG = _PACKAGE / "_examples" / "logging.yaml"
_CHECKOUT_CONFIG = _PACKAGE.parent / "examples" / "logging.yaml"

DEFAULT_CONFIG = _SHIPPED_CONFIG if _SHIPPED_CONFIG.is_file() else _CHECKOUT_CONFIG
"""The logging configuration the demo loads: ``examples/logging.yaml``, which the wheel
ships inside the package (``_examples/``), read from the checkout in a development install."""

DEFAULT_NAMESPACE = "default"
"""The namespace of the simulated pods (and so of their events)."""


class DemoError(Exception):
    """The demo cannot run: a missing configuration file, no PyYAML, a bad kubeconfig."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``python -m k8s_logging_events demo`` was asked to do.

    Args:
        kubeconfig: write to the cluster of this kubeconfig; None: the one named by
            ``$KUBECONFIG``, if set, else a local Events API server.
        local: use a local Events API server even when ``$KUBECONFIG`` is set.
        namespace: the namespace of the simulated pods and their events.
        config: the logging configuration (YAML for dictConfig).
        show_logs: let the configuration's other handlers (the console) print every record;
            by default they print only the library's own reports.
    """

    kubeconfig: str | None = None
    local: bool = False
    namespace: str = DEFAULT_NAMESPACE
    config: Path = DEFAULT_CONFIG
    show_logs: bool = False
    api: str = "v1"
    """Which Events API to write and read back: ``v1`` or ``events.k8s.io/v1``."""


@dataclass
class DemoResult:
    """What the demo did and what the API server ended up with."""

    target: str
    """Where the events went: the local server's URL, or the cluster's."""
    pods: list[dict[str, Any]]
    """The simulated pods, as manifest dicts."""
    events: dict[str, list[dict[str, Any]]]
    """The events read back from the server after the flush, per pod name (JSON of ``api``)."""
    logged: dict[tuple[str, str], int]
    """Occurrences logged, per (pod name, reason), counted on the controller's logger."""
    stored: dict[tuple[str, str], int]
    """The occurrences the server's events stand for (``count``, or ``series.count``)."""
    stats: dict[str, int]
    """``handler.stats()`` after the flush."""
    flushed: bool
    """Whether the flush finished within the handler's ``flush_timeout``."""
    seconds: float
    """How long the demo took, from configuring logging to reading the events back."""
    api: str = "v1"
    """The Events API written and read back."""
    kubectl_command: str | None = None
    """The ``kubectl describe pod`` command for one of the pods (None: not on a cluster
    target, whose pods do not exist)."""
    kubectl_output: str | None = None
    """What that command printed (None when it was not run or failed)."""
    kubectl_note: str = ""
    """Why the command was not run, or how it failed."""

    @property
    def counts_match(self) -> bool:
        """True when the server counts exactly the occurrences that were logged."""
        return bool(self.logged) and self.logged == self.stored

    @property
    def stats_add_up(self) -> bool:
        """True when every accepted occurrence has exactly one outcome and none is pending."""
        outcomes = sum(self.stats[key] for key in OUTCOMES)
        return self.stats["pending"] == 0 and self.stats["accepted"] == outcomes

    @property
    def ok(self) -> bool:
        """True when the flush finished, the counts match and the stats add up."""
        return self.flushed and self.counts_match and self.stats_add_up
