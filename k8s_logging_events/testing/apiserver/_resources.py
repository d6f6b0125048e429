"""What the local API server knows of each resource it lists and watches, said once.

Part of the local API server on the test side of the pipeline, beside the store (``_store``)
and the request parsing (``_requests``): one :class:`Resource` for each resource of each
API -- the kind of its objects, the selectable fields of a stored object (its registry
strategy's ``ToSelectableFields``) and the check of a field selector's labels (which, for
events.k8s.io/v1, also maps them onto the core names the stored events use). The store's
pages, the handlers' selectors and the watches all read it from :func:`resource_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from k8s_logging_events.testing.apiserver._objects import (
    CORE_API,
    EVENTS_API,
    EVENTS_RESOURCE,
    NAMESPACES_RESOURCE,
    PODS_RESOURCE,
    Api,
)
from k8s_logging_events.testing.apiserver._pods import POD_FIELD_LABELS, pod_fields
from k8s_logging_events.testing.apiserver._selectors import (
    CORE_FIELD_LABELS,
    EVENTS_FIELD_LABELS,
    SelectorError,
    event_fields,
    namespace_field_label,
    namespace_fields,
)

FieldsOf = Callable[[dict[str, Any]], Mapping[str, str]]
"""The selectable fields of a stored object, by field name."""


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource of one API, as its lists and watches select it."""

    name: str
    """The resource in the path: ``events``, ``pods`` or ``namespaces``."""
    kind: str
    """The kind of its objects (what a watch's bookmark names)."""
    fields_of: FieldsOf
    """The selectable fields of a stored object (an event in its canonical core form)."""
    field_label: Callable[[str], str]
    """A field selector's label as a name of :attr:`fields_of`; raises
    :class:`~._selectors.SelectorError` for a label the API does not offer."""


def _offered(labels: Mapping[str, str] | Iterable[str]) -> Callable[[str], str]:
    """The check of a field selector's labels against those an API offers (a mapping
    renames them onto the stored object's field names)."""
    names = labels if isinstance(labels, Mapping) else {label: label for label in labels}

    def field_label(label: str) -> str:
        try:
            return names[label]
        except KeyError:
            raise SelectorError(f"field label not supported: {label}") from None

    return field_label


_RESOURCES = {
    (CORE_API, EVENTS_RESOURCE): Resource(
        EVENTS_RESOURCE, "Event", event_fields, _offered(CORE_FIELD_LABELS)
    ),
    (EVENTS_API, EVENTS_RESOURCE): Resource(
        EVENTS_RESOURCE, "Event", event_fields, _offered(EVENTS_FIELD_LABELS)
    ),
    (CORE_API, PODS_RESOURCE): Resource(
        PODS_RESOURCE, "Pod", pod_fields, _offered(POD_FIELD_LABELS)
    ),
    (CORE_API, NAMESPACES_RESOURCE): Resource(
        NAMESPACES_RESOURCE, "Namespace", namespace_fields, namespace_field_label
    ),
}


def resource_of(api: Api, name: str) -> Resource:
    """The resource ``name`` of ``api`` (the router serves only these: KeyError otherwise)."""
    return _RESOURCES[api, name]
