"""What an event is about: :class:`ObjectReference`, and :func:`object_reference`, which turns
whatever a caller passed as ``involved`` into one. At the front of the pipeline, on the
application's thread (docs/architecture.md): the reference is a snapshot of the object when
the event is recorded."""

from __future__ import annotations

import dataclasses
import itertools
import operator
import re
import reprlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from k8s_logging_events import _kinds

__all__ = [
    "InvalidObjectError",
    "ObjectReference",
    "Repair",
    "object_reference",
    "repaired",
    "type_meta_for_model",
]


@dataclass(frozen=True, slots=True)
class ObjectReference:
    """Enough of an object's identity to point an event at it (core/v1 ``ObjectReference``)."""

    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    api_version: str = ""
    resource_version: str = ""
    field_path: str = ""

    def to_api(self) -> dict[str, str]:
        """Return the camelCase JSON form, without empty fields."""
        return {camel: value for attr, camel in _FIELDS if (value := getattr(self, attr))}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ObjectReference:
        """Build a reference from its camelCase JSON form; unknown keys are ignored."""
        return cls(*["" if (v := data.get(camel)) is None else str(v) for _, camel in _FIELDS])


_METADATA_FIELDS = (
    ("name", "name"),
    ("namespace", "namespace"),
    ("uid", "uid"),
    ("resource_version", "resourceVersion"),
)

# each field, in the order of ObjectReference's, and its camelCase spelling (Kopf, kubectl,
# the API); a flat mapping may spell it as the attribute is (the client's to_dict())
_FIELDS = (
    ("kind", "kind"),
    ("namespace", "namespace"),
    ("name", "name"),
    ("uid", "uid"),
    ("api_version", "apiVersion"),
    ("resource_version", "resourceVersion"),
    ("field_path", "fieldPath"),
)

# V1Pod, V1beta1CronJob, CoreV1Event, EventsV1Event: an optional group prefix, the version,
# then the kind.
_MODEL_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)([A-Z]\w*)$")
_API_PATH = re.compile(r"^/(?:api/(v\w+)|apis/([^/]+)/(v\w+))/")
# where the client's method names put an underscore: CSIStorageCapacity is csi_storage_capacity
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# a namespace is a DNS-1123 label, or the server refuses the event (its URL may not carry it)
_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")

_MISSING = object()
_TEXT_OR_UNSET = frozenset((str, type(None)))
# the dynamic client's objects and list items (not its resources, which raise for a name)
_DYNAMIC_OBJECTS = frozenset(
    ("kubernetes.dynamic.resource", name) for name in ("ResourceInstance", "ResourceField")
)
# decided on first sight of a class: which reader its objects need, whether it is a Mapping
_MAX_CLASSES = 1024
_READERS: dict[type, Callable[[Any], ObjectReference]] = {}
_MAPPING_CLASSES: dict[type, bool] = {}
# models missing from the shipped table, found once by the slow search
_searched: dict[type, tuple[str, str]] = {}
# the references made lately, by their fields (see _shared), and the namespaces found valid;
# each forgets all when full
_MAX_SHARED = 4096
_shared_refs: dict[tuple[str, ...], ObjectReference] = {}
_namespaces: set[str] = set()


class InvalidObjectError(ValueError):
    """The object given as ``involved`` cannot be referred to by an event.

    Raised as ``InvalidObjectError(problem, obj)``, it describes ``obj`` when it is shown, not
    when raised: a refused record is reported once per call site, and the repr of a list of
    a thousand pods takes seconds, on every log call about it.
    """

    def __str__(self) -> str:
        if len(self.args) != 2:
            return super().__str__()
        problem, obj = self.args
        return f"cannot refer to {_describe(obj)}: {problem}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


def object_reference(obj: object, *, field_path: str = "") -> ObjectReference:
    """Return a reference to ``obj`` for an event's ``involvedObject``.

    Args:
        obj: an :class:`~.ObjectReference`, a ``kubernetes`` client model (``V1ObjectReference``
            too; items of list calls take kind and apiVersion from their class), a manifest
            dict (``apiVersion``, ``kind``, ``metadata``), a flat reference mapping (``kind``,
            ``name``, ``namespace``, ``uid``, ``apiVersion``, camelCase or snake_case; a
            built-in kind served in one version alone gets it when none is given), an
            object of the client's dynamic API (``kubernetes.dynamic``), or an object with
            ``.metadata`` and ``.kind``/``.api_version``.
        field_path: the part of the object the event is about (``spec.containers{app}``);
            overrides one already in a reference.

    Raises:
        InvalidObjectError: ``obj`` is none of the above, lacks a kind or a name, or has a
            namespace that is no DNS label.
    """
    ref = _reader_of(obj)(obj)
    # one look-up a record, the rule once a namespace; "" (none) never looked up: another
    # thread emptying the set refused the events of cluster-scoped objects meanwhile
    if ref.namespace and ref.namespace not in _namespaces:
        if _NAMESPACE.fullmatch(ref.namespace) is None:  # bounded: it scans 63 characters at most
            raise InvalidObjectError(
                f"its namespace {ref.namespace[:80]!r} is no DNS label (at most 63 lowercase "
                "letters, digits and '-', alphanumeric at both ends), where the server files "
                "events",
                obj,
            )
        if len(_namespaces) >= _MAX_SHARED:
            _namespaces.clear()
        _namespaces.add(ref.namespace)
    if field_path and field_path != ref.field_path:
        return dataclasses.replace(ref, field_path=field_path)
    return ref


Repair = tuple[str, str, tuple[object, ...]]
"""A change :func:`repaired` made: what kind of change, a message and its arguments."""


def repaired(ref: ObjectReference, default_namespace: str) -> tuple[ObjectReference, list[Repair]]:
    """``ref`` as ``kubectl describe`` finds it, and what was changed to get there: a built-in
    kind's one spelling (``pod``: ``Pod``), a namespaced built-in object filed in
    ``default_namespace`` when it has none, a cluster-scoped one's namespace dropped, and
    unreported, a built-in kind's one apiVersion when it has none (``kubectl events --for``)."""
    repairs: list[Repair] = []
    kind = _kinds.built_in_kind(ref.kind, ref.api_version)
    if kind is not None and kind != ref.kind:
        message = (
            "The involved object's kind %r is recorded as %r: kinds are case-sensitive, and "
            "kubectl finds events by the exact kind"
        )
        repairs.append(("kind-case", message, (ref.kind, kind)))
        ref = dataclasses.replace(ref, kind=kind)
    if kind is not None and not ref.api_version and (version := _kinds.ONE_API_VERSION.get(kind)):
        # completed, as a list item's is: kubectl events --for selects by the apiVersion;
        # silent and on every record about a flat reference, so shared, not made anew
        fields = (ref.kind, ref.namespace, ref.name, ref.uid, version, ref.resource_version)
        ref = _shared(*fields, ref.field_path)
    if not ref.namespace and _kinds.is_namespaced(ref.kind, ref.api_version):
        message = (
            "The involved %s %r has no namespace, though %s objects live in one: the event is "
            "filed in namespace %r (kubectl describe -n %s shows it there). Give the object's "
            "namespace (metadata.namespace in a manifest, namespace in a flat reference) to "
            "file the event with the object"
        )
        args = (ref.kind, ref.name, ref.kind, default_namespace, default_namespace)
        repairs.append(("namespace", message, args))
        ref = dataclasses.replace(ref, namespace=default_namespace)
    elif ref.namespace and _kinds.is_cluster_scoped(ref.kind, ref.api_version):
        message = (
            "The involved %s %r was given the namespace %r, though %s objects are "
            "cluster-scoped: it is recorded without one and the event filed in namespace %r "
            "(kubectl describe finds events about it only there)"
        )
        # not default_namespace (a recorder's own, for namespaced objects): the server takes
        # a cluster-scoped object's events in 'default' alone (models.DEFAULT_NAMESPACE)
        args = (ref.kind, ref.name, ref.namespace, ref.kind, "default")
        repairs.append(("cluster-scoped", message, args))
        ref = dataclasses.replace(ref, namespace="")
    return ref, repairs


_T = TypeVar("_T")
_consume = deque[None](maxlen=0).extend  # runs an iterator to its end, in C


def maker(cls: type[_T]) -> Callable[..., _T]:
    """``cls(*values)`` for a frozen dataclass with slots whose ``__post_init__`` has nothing
    to do, every field given in order: each slot set in C (the generated ``__init__`` calls
    ``object.__setattr__`` per field, a third of what making one costs)."""
    setters = [getattr(cls, f.name).__set__ for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def make(*values: object) -> _T:
        made = object.__new__(cls)
        _consume(map(operator.call, setters, itertools.repeat(made), values))
        return made

    return make


def _shared(*key: str) -> ObjectReference:
    """The reference with these fields (all seven, in order), the one made last time if any:
    making a frozen dataclass costs as much as reading the object, records are nearly always
    about objects logged about before, and equal immutable references may be one object."""
    ref = _shared_refs.get(key)
    if ref is None:
        if len(_shared_refs) >= _MAX_SHARED:
            _shared_refs.clear()
        ref = _shared_refs[key] = _new_reference(*key)
    return ref


_new_reference = maker(ObjectReference)


def _reader_of(obj: object) -> Callable[[Any], ObjectReference]:
    # the branch an object takes depends on its class alone: decide it once per class,
    # because this runs for every record on the application's thread
    cls = type(obj)
    reader = _READERS.get(cls)
    if reader is None:
        if issubclass(cls, ObjectReference):
            reader = _as_reference
        elif issubclass(cls, Mapping):
            reader = _from_manifest
        elif cls.__name__ == "V1ObjectReference" and cls.__module__.startswith("kubernetes."):
            reader = _from_client_reference
        elif any((base.__module__, base.__name__) in _DYNAMIC_OBJECTS for base in cls.__mro__):
            reader = _from_dynamic
        elif hasattr(obj, "metadata"):
            reader = _from_model
        else:
            return _unknown  # not cached: an instance may grow a metadata attribute
        if len(_READERS) < _MAX_CLASSES:
            _READERS[cls] = reader
    return reader


def _unknown(obj: object) -> ObjectReference:
    raise InvalidObjectError(
        "expected a kubernetes client model, a manifest (apiVersion, kind, metadata), a flat "
        "reference (kind, name) or an ObjectReference",
        obj,
    )


def _as_reference(obj: ObjectReference) -> ObjectReference:
    # built by hand, it may hold other things than text, and lack a kind or a name
    if not all(type(getattr(obj, attr)) is str for attr, _ in _FIELDS):
        obj = _shared(*(_attr(obj, attr, obj) for attr, _ in _FIELDS))
    return _checked(obj, obj)


def _from_manifest(data: Mapping[Any, Any]) -> ObjectReference:
    if "metadata" not in data:
        return _from_flat(data)
    metadata = data.get("metadata")
    if not isinstance(metadata, Mapping):
        raise InvalidObjectError("it has no 'metadata' mapping", data)
    kind = _field(data, "kind", data)
    api_version = _field(data, "apiVersion", data, "api_version")
    name, namespace, uid, version = (_field(metadata, key, data, a) for a, key in _METADATA_FIELDS)
    return _checked(_shared(kind, namespace, name, uid, api_version, version, ""), data)


def _from_flat(data: Mapping[Any, Any]) -> ObjectReference:
    """A flat reference: Kopf's ``k8s_ref``, a kubectl-style or ``to_dict()`` reference."""
    values = [_field(data, camel, data, attr) for attr, camel in _FIELDS]
    if not values[4]:
        # a built-in kind's one apiVersion, read here as a list item's is: the reference is
        # then shared whole, and the next record about it needs no completing
        values[4] = _kinds.ONE_API_VERSION.get(values[0], "")
    expected = (
        "a manifest with apiVersion, kind and metadata, or a flat reference with kind and name"
    )
    return _checked(_shared(*values), data, f" (expected {expected})")


def _from_model(obj: Any) -> ObjectReference:
    metadata = obj.metadata
    if metadata is None:
        raise InvalidObjectError("its metadata is None", obj)
    # an ABC check costs more than the attribute reads it guards: decided once per class
    is_mapping = _MAPPING_CLASSES.get(type(metadata))
    if is_mapping is None:
        is_mapping = issubclass(type(metadata), Mapping)
        if len(_MAPPING_CLASSES) < _MAX_CLASSES:
            _MAPPING_CLASSES[type(metadata)] = is_mapping
    if is_mapping:
        name, namespace, uid, version = (_field(metadata, key, obj) for _, key in _METADATA_FIELDS)
    else:
        name, namespace, uid, version = _model_metadata(metadata, obj)
    kind, api_version = getattr(obj, "kind", None), getattr(obj, "api_version", None)
    if type(kind) is not str or type(api_version) is not str or not kind or not api_version:
        kind = _attr(obj, "kind", obj)
        api_version = _attr(obj, "api_version", obj, "apiVersion")
        # items of a list call come back without type metadata: the class knows it
        class_kind, class_api_version = type_meta_for_model(type(obj))
        kind = kind or class_kind
        api_version = api_version or class_api_version
    ref = _shared(kind, namespace, name, uid, api_version, version, "")
    return ref if name and kind else _checked(ref, obj)


def _from_dynamic(obj: Any) -> ObjectReference:
    # the client's dynamic objects (kubernetes.dynamic) answer None for any name they lack,
    # resource_version too: read them by the API's spelling alone (resourceVersion)
    metadata = obj.metadata
    if metadata is None:
        raise InvalidObjectError("its metadata is None", obj)
    name, namespace, uid, version = (_attr(metadata, key, obj) for _, key in _METADATA_FIELDS)
    kind, api_version = _attr(obj, "kind", obj), _attr(obj, "apiVersion", obj)
    return _checked(_shared(kind, namespace, name, uid, api_version, version, ""), obj)


def _model_metadata(metadata: Any, obj: object) -> tuple[str, str, str, str]:
    """Name, namespace, uid and resourceVersion of an object's ``metadata`` object."""
    try:  # the client's models, read as plainly as possible: this runs for every record
        values = (metadata.name, metadata.namespace, metadata.uid, metadata.resource_version)
    except AttributeError:
        # other libraries spell it resourceVersion: asked only when missing (an empty value
        # on a pydantic model would cost a failed look-up on every record)
        pass
    else:
        name, namespace, uid, version = values
        text_or_unset = _TEXT_OR_UNSET
        if (
            type(name) in text_or_unset
            and type(namespace) in text_or_unset
            and type(uid) in text_or_unset
            and type(version) in text_or_unset
        ):
            return name or "", namespace or "", uid or "", version or ""
    # by name (an error naming the field, when a value is no text)
    name, namespace, uid, version = (
        _attr(metadata, attr, obj, key) for attr, key in _METADATA_FIELDS
    )
    return name, namespace, uid, version


def _from_client_reference(obj: Any) -> ObjectReference:
    return _checked(_shared(*(_attr(obj, attr, obj) for attr, _ in _FIELDS)), obj)


def _checked(ref: ObjectReference, original: object, expected: str = "") -> ObjectReference:
    if ref.kind and ref.name:
        return ref
    missing = "name" if ref.kind else "kind"
    raise InvalidObjectError(f"it has no {missing}{expected}", original)


def _field(data: Mapping[Any, Any], key: str, original: object, snake: str = "") -> str:
    value = data.get(key)
    if not value and snake:  # as the client's to_dict() spells it (api_version)
        value = data.get(snake, value)
    if type(value) is str:
        return value
    if value is None:
        return ""
    return _plain_text(value, key, original)


def _plain_text(value: object, name: str, original: object) -> str:
    """A ``str`` subclass's text as a plain ``str`` (its equality could match another shared
    reference, its instance keep the caller's object alive); anything else is refused."""
    if not isinstance(value, str):
        raise InvalidObjectError(f"{name} is a {type(value).__name__}, not a string", original)
    return str.__str__(value)


def _attr(obj: object, name: str, original: object, other_spelling: str = "") -> str:
    value = getattr(obj, name, _MISSING)
    if value is _MISSING and other_spelling:
        value = getattr(obj, other_spelling, None)
    if type(value) is str:
        return value
    if value is None or value is _MISSING:
        return ""
    return _plain_text(value, name, original)


class _ShortRepr(reprlib.Repr):
    """A repr cut short while it is made, not after: a list of a thousand pods, or a client
    model (whose repr pretty-prints it whole), takes seconds to show in full."""

    def repr_instance(self, obj: object, level: int) -> str:
        if str(type(obj).__module__).startswith("kubernetes."):  # named as a human finds it
            name = getattr(getattr(obj, "metadata", None), "name", None)
            shown = f" {name[:80]!r}" if isinstance(name, str) else ""
            return f"<{type(obj).__name__}{shown}>"
        text = repr(obj)
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."


_short_repr = _ShortRepr()
_short_repr.maxother = 80


def _describe(obj: object) -> str:
    try:
        text = _short_repr.repr(obj)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = "<unrepresentable>"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(obj).__name__} {text}"


def type_meta_for_model(cls: type) -> tuple[str, str]:
    """Return ``(kind, apiVersion)`` for a ``kubernetes`` client model class (``V1Deployment``:
    ``("Deployment", "apps/v1")``), or ``("", "")``."""
    if not cls.__module__.startswith("kubernetes."):
        return "", ""
    known = _kinds.MODEL_TYPE_META.get(cls.__name__) or _searched.get(cls)
    if known is None:
        known = _searched[cls] = _search_type_meta(cls)
    return known


def _search_type_meta(cls: type) -> tuple[str, str]:
    """Find a model's apiVersion in the path its client read method (returning it) requests
    (slow)."""
    match = _MODEL_NAME.match(cls.__name__)
    if match is None:
        return "", ""
    from kubernetes import client  # here: importing the package imports no client

    prefix, version, kind = match.groups()
    snake = _CAMEL_BOUNDARY.sub("_", kind).lower()
    suffix = f"{prefix or ''}{version}Api"
    for api in (getattr(client, name) for name in dir(client) if name.endswith(suffix)):
        for method in (f"read_namespaced_{snake}", f"read_{snake}"):
            function = getattr(api, method, None)
            if getattr(function, "__annotations__", {}).get("return") is not cls:
                continue
            code = getattr(getattr(api, f"_{method}_serialize", None), "__code__", None)
            for const in getattr(code, "co_consts", ()):
                path = _API_PATH.match(const) if isinstance(const, str) else None
                if path is not None:
                    core_version, group, group_version = path.groups()
                    return kind, core_version or f"{group}/{group_version}"
    return "", ""
