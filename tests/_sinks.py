"""Sinks the tests wrap around the fakes."""

from __future__ import annotations

import threading

from k8s_logging_events import models, sink
from k8s_logging_events.testing import FakeEventSink


class WithoutRead:
    """A user's sink around ``inner``: create, update and patch only, as the EventSink
    Protocol has them.

    Without ``read`` the writer keeps client-go's ways: no takeover, no guarded patches.
    """

    def __init__(self, inner: sink.EventSink) -> None:
        self.inner = inner

    def create(self, event: models.Event) -> models.Event:
        return self.inner.create(event)

    def update(self, event: models.Event) -> models.Event:
        return self.inner.update(event)

    def patch(self, event: models.Event, data: bytes) -> models.Event:
        return self.inner.patch(event, data)


class SetUpHangs(FakeEventSink):
    """A sink whose set-up (the request that asks the server its Events API) hangs until the
    test opens ``gate``; ``asked`` is set once a thread asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()
        self.gate = threading.Event()

    @property
    def api_known(self) -> bool:
        return False

    @property
    def api(self) -> str:
        self.asked.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return sink.CORE_V1
