"""Sinks the tests wrap around the fakes."""

from __future__ import annotations

from k8s_logging_events import models, sink


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
