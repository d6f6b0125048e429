"""Turning what a caller passed as ``involved`` into an ObjectReference."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from k8s_logging_events import _kinds, models, references
from k8s_logging_events.references import InvalidObjectError, object_reference
from k8s_logging_events.testing import LocalApiServer


def _meta() -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name="web", namespace="prod", uid="u1", resource_version="7")


def test_a_client_model_with_type_meta_is_referenced_as_is() -> None:
    """A model read with a single get carries kind and apiVersion itself."""
    pod = client.V1Pod(api_version="v1", kind="Pod", metadata=_meta())
    assert object_reference(pod) == models.ObjectReference(
        kind="Pod", namespace="prod", name="web", uid="u1", api_version="v1", resource_version="7"
    )


@pytest.mark.parametrize(
    ("model", "kind", "api_version"),
    [
        (client.V1Pod, "Pod", "v1"),
        (client.V1Deployment, "Deployment", "apps/v1"),
        (client.V1CronJob, "CronJob", "batch/v1"),
        (client.V1ClusterRole, "ClusterRole", "rbac.authorization.k8s.io/v1"),
        (client.V2HorizontalPodAutoscaler, "HorizontalPodAutoscaler", "autoscaling/v2"),
        # kinds spelt with an acronym were missing, so their list items were refused
        (client.V1CSINode, "CSINode", "storage.k8s.io/v1"),
        (client.V1CSIStorageCapacity, "CSIStorageCapacity", "storage.k8s.io/v1"),
        (client.V1ServiceCIDR, "ServiceCIDR", "networking.k8s.io/v1"),
    ],
)
def test_list_items_without_type_meta_take_it_from_their_class(
    model: type, kind: str, api_version: str
) -> None:
    """Items of list calls have no kind/apiVersion: the model class supplies them."""
    ref = object_reference(model.model_construct(metadata=_meta()))  # type: ignore[attr-defined]
    assert (ref.kind, ref.api_version, ref.name) == (kind, api_version, "web")


def test_the_kind_table_agrees_with_the_clients_read_methods() -> None:
    """The shipped table and the slow search through the client's API classes agree."""
    for name in ("V1Pod", "V1Deployment", "V1Node", "V1Ingress", "V1StatefulSet", "EventsV1Event"):
        cls = getattr(client, name)
        assert references._search_type_meta(cls) == _kinds.MODEL_TYPE_META[name]


def test_every_entry_of_the_kind_table_is_what_the_client_says() -> None:
    """Each class of the table (built from kinds per apiVersion) is a client model whose read
    method gives that kind and apiVersion, so a slip in the compact table cannot pass."""
    for name, type_meta in _kinds.MODEL_TYPE_META.items():
        assert references._search_type_meta(getattr(client, name)) == type_meta, name


def test_every_resource_model_of_the_client_is_in_the_kind_table() -> None:
    """A model the client reads (kind and metadata) is in the table: one missing from it
    (CSINode, APIService ...) was looked for by the slow search on the logging thread, which
    did not find kinds spelt with an acronym either, and its list items were refused."""
    models_read = {
        name: type_meta
        for name in dir(client)
        if name.startswith("V") and "metadata" in getattr(getattr(client, name), "model_fields", {})
        if (type_meta := references._search_type_meta(getattr(client, name))) != ("", "")
    }
    assert {name: models_read[name] for name in models_read.keys() - _kinds.MODEL_TYPE_META} == {}


def test_the_namespaced_kinds_are_those_the_client_reads_by_namespace() -> None:
    """_kinds.NAMESPACED_KINDS agrees with the client: a read_namespaced_* method each."""
    apis = [getattr(client, name) for name in dir(client) if name.endswith("Api")]
    for kind in _kinds._GROUPS:  # every built-in kind, in its one spelling
        snake = references._CAMEL_BOUNDARY.sub("_", kind).lower()
        namespaced = any(hasattr(api, f"read_namespaced_{snake}") for api in apis)
        assert (kind in _kinds.NAMESPACED_KINDS) == namespaced, kind


def test_repaired_spells_built_in_kinds_and_files_namespaced_objects_in_default() -> None:
    """One rule: pod -> Pod (not a custom resource's kind), and a namespaced built-in
    object without a namespace goes to the default namespace; each change is noted (the
    apiVersion of a kind served in one version alone is completed, unnoted)."""
    ref, repairs = references.repaired(models.ObjectReference(kind="pod", name="p"), "default")
    assert ref == models.ObjectReference(
        kind="Pod", name="p", namespace="default", api_version="v1"
    )
    assert [kind for kind, _, _ in repairs] == ["kind-case", "namespace"]
    custom = models.ObjectReference(kind="pod", name="p", api_version="example.com/v1")
    assert references.repaired(custom, "default") == (custom, [])
    deployment = models.ObjectReference(kind="DEPLOYMENT", name="d", api_version="apps/v1")
    ref, repairs = references.repaired(deployment, "default")
    assert (ref.kind, ref.namespace, len(repairs)) == ("Deployment", "default", 2)
    node = models.ObjectReference(kind="Node", name="n", api_version="v1")
    assert references.repaired(node, "default") == (node, [])


def test_a_completed_api_version_gives_the_one_shared_reference() -> None:
    """Completing ``{"kind": "Pod", ...}`` with ``v1`` is silent and happens on every record
    about a flat reference (on the caller's path): like the references read from objects,
    equal completed references are one object, not a new one per record."""
    flat = {"kind": "Pod", "name": "web-0", "namespace": "shop"}
    first = references.repaired(references.object_reference(flat), "default")[0]
    again = references.repaired(references.object_reference(dict(flat)), "default")[0]
    assert first.api_version == "v1"
    assert again is first
    model = references.object_reference(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"}}
    )
    assert model is first  # the manifest with its apiVersion: the same reference
    # read with it already, as a list item is: a record about it takes the fast path again
    assert references.object_reference(dict(flat)) is first


def test_repaired_takes_the_namespace_off_a_built_in_cluster_scoped_object() -> None:
    """A Node or ClusterRole given a namespace loses it (``kubectl describe`` selects its
    events by an empty namespace), noted once; a custom kind of the same name keeps it."""
    node = models.ObjectReference(kind="Node", name="n", namespace="shop", api_version="v1")
    ref, repairs = references.repaired(node, "default")
    assert (ref.namespace, [kind for kind, _, _ in repairs]) == ("", ["cluster-scoped"])
    flat = models.ObjectReference(kind="node", name="n", namespace="shop")
    ref, repairs = references.repaired(flat, "default")
    assert (ref.kind, ref.namespace, len(repairs)) == ("Node", "", 2)
    custom = models.ObjectReference(kind="Node", name="n", namespace="shop", api_version="x.io/v1")
    assert references.repaired(custom, "default") == (custom, [])


def test_a_manifest_dict_is_referenced() -> None:
    """A manifest dict with apiVersion, kind and metadata works."""
    manifest = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "ns", "uid": "u", "resourceVersion": "3"},
        "spec": {},
    }
    assert object_reference(manifest) == models.ObjectReference(
        kind="Widget",
        namespace="ns",
        name="w",
        uid="u",
        api_version="example.com/v1",
        resource_version="3",
    )


def test_a_client_models_to_dict_is_referenced_as_its_manifest() -> None:
    """``pod.to_dict()`` is the manifest in the client's snake_case (``api_version``,
    ``metadata.resource_version``): read in that spelling too, as a flat reference's is. Both
    were lost, the reference left with no apiVersion and no resourceVersion."""
    pod = client.V1Pod(api_version="v1", kind="Pod", metadata=_meta())
    assert object_reference(pod.to_dict()) == object_reference(pod)


def test_references_and_client_references_pass_through_with_their_field_path() -> None:
    """An ObjectReference (ours or the client's) is used as is."""
    ours = models.ObjectReference(kind="Pod", name="p", field_path="spec.containers{a}")
    assert object_reference(ours) is ours
    theirs = client.V1ObjectReference(kind="Pod", name="p", namespace="n", field_path="x")
    assert object_reference(theirs) == models.ObjectReference(
        kind="Pod", name="p", namespace="n", field_path="x"
    )


def test_field_path_argument_is_added_to_the_reference() -> None:
    """``field_path`` points the event at a part of the object."""
    ref = object_reference(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
        field_path="spec.containers{app}",
    )
    assert ref.field_path == "spec.containers{app}"


class _Duck:
    kind = "Widget"
    apiVersion = "example.com/v1"  # noqa: N815 - the spelling of other client libraries

    class metadata:  # noqa: N801
        name = "d"
        namespace = "ns"
        uid = None
        resourceVersion = "9"  # noqa: N815


def test_any_object_with_metadata_and_kind_is_referenced() -> None:
    """Objects of other client libraries (camelCase attributes) work too."""
    ref = object_reference(_Duck())
    assert (ref.kind, ref.api_version, ref.name, ref.namespace, ref.resource_version) == (
        "Widget",
        "example.com/v1",
        "d",
        "ns",
        "9",
    )


def test_an_object_of_the_clients_dynamic_api_is_referenced_with_its_api_version() -> None:
    """The official client's dynamic objects answer None for any attribute they lack, the
    snake_case ``api_version`` too: their camelCase ``apiVersion`` is read all the same."""
    from kubernetes.dynamic.resource import ResourceInstance

    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "uid": "u1"},
    }
    ref = object_reference(ResourceInstance(None, manifest))
    assert (ref.kind, ref.api_version, ref.name, ref.namespace, ref.uid) == (
        "Deployment",
        "apps/v1",
        "web",
        "prod",
        "u1",
    )


def test_an_object_of_the_clients_dynamic_api_is_referenced_as_the_same_object_typed(
    k8s_apiserver: LocalApiServer, k8s_api_client: Any, tmp_path: Path
) -> None:
    """A pod read through ``kubernetes.dynamic`` (one get, or an item of a list) gives the
    reference the same pod gives as a typed model or as its manifest, resourceVersion too:
    the dynamic objects spell fields as the API does and answer None for ``resource_version``."""
    from kubernetes.dynamic import DynamicClient

    k8s_apiserver.add_pod("web-0", "default")
    dynamic_client = DynamicClient(k8s_api_client, cache_file=str(tmp_path / "discovery.json"))
    pods = dynamic_client.resources.get(api_version="v1", kind="Pod")
    typed = client.CoreV1Api(k8s_api_client).read_namespaced_pod("web-0", "default")
    expected = object_reference(typed)
    assert expected.resource_version
    manifest = k8s_api_client.sanitize_for_serialization(typed)
    dynamic = pods.get(name="web-0", namespace="default")
    item = pods.get(namespace="default").items[0]
    assert [object_reference(obj) for obj in (manifest, dynamic, item)] == [expected] * 3
    for not_an_object in (pods, dynamic_client):  # a resource of the API, and the client
        with pytest.raises(InvalidObjectError, match="expected a kubernetes client model"):
            object_reference(not_an_object)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("my-pod", "cannot refer to str 'my-pod'"),
        (None, "cannot refer to NoneType"),
        (42, "cannot refer to int 42"),
        ({"metadata": {"name": "x"}}, "it has no kind"),
        ({"kind": "Pod", "apiVersion": "v1"}, "it has no name (expected a manifest"),
        ({"kind": "Pod", "metadata": "web-0"}, "no 'metadata' mapping"),
        ({"name": "web-0", "namespace": "prod"}, "it has no kind (expected a manifest"),
        ({}, "it has no kind"),
        ({"kind": 5, "name": "web-0"}, "kind is a int, not a string"),
        ({"kind": "Pod", "metadata": {"name": 5}}, "name is a int, not a string"),
        ({"kind": "Pod", "metadata": {}}, "it has no name"),
        (client.V1Pod(), "its metadata is None"),
        (models.ObjectReference(), "it has no kind"),
        (models.ObjectReference(kind="Pod", namespace="prod"), "it has no name"),
        (models.ObjectReference(kind="Pod", name=5), "name is a int, not a string"),  # type: ignore[arg-type]
        (client.V1ObjectReference(), "it has no kind"),
        (client.V1ObjectReference(name="web-0", namespace="prod"), "it has no kind"),
        (client.V1ObjectReference(kind="Pod", namespace="prod"), "it has no name"),
    ],
)
def test_anything_else_raises_invalid_object_error_naming_it(value: object, fragment: str) -> None:
    """The error is a ValueError that says what was passed and what is wrong with it; a
    reference (ours or the client's) without a kind or a name is refused like a manifest
    without one: an event about it would be about nothing ``kubectl`` can find."""
    with pytest.raises(
        InvalidObjectError, match=fragment.replace("(", r"\(").replace("'", "'")
    ) as info:
        object_reference(value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "namespace", ["Shop Bad", "a/../b", "shop-", "x" * 64, "sh\u00f6p", "ns\udcff"]
)
def test_a_namespace_that_is_no_dns_label_is_refused(namespace: str) -> None:
    """The server refuses an event in a namespace that is no DNS-1123 label (its URL may not
    even carry it): refused here, on the caller's thread, whatever form names it; 63
    characters are still a namespace."""
    forms: list[object] = [
        {"kind": "Pod", "name": "web-0", "namespace": namespace},
        client.V1Pod(metadata=client.V1ObjectMeta(name="web-0", namespace=namespace)),
        models.ObjectReference(kind="Pod", name="web-0", namespace=namespace),
    ]
    for form in forms:
        with pytest.raises(InvalidObjectError, match="is no DNS label"):
            object_reference(form)
    assert object_reference({"kind": "Pod", "name": "web-0", "namespace": "x" * 63})


def test_a_huge_or_broken_repr_does_not_swamp_or_break_the_message() -> None:
    """The description of a bad object is cut short, and a failing repr is survived."""

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(InvalidObjectError, match="unrepresentable"):
        object_reference(Broken())
    with pytest.raises(InvalidObjectError) as info:
        object_reference("x" * 10_000)
    assert len(str(info.value)) < 250


def test_a_refused_object_is_described_only_when_its_error_is_shown() -> None:
    """A record about an object that cannot be referred to is refused on every log call, and
    reported once per call site; the error made the object's repr when raised, so each call
    about ``pods.items`` (a thousand pods) took seconds. It is described when shown."""
    shown = []

    class Counted:
        def __repr__(self) -> str:
            shown.append(self)
            return "Counted()"

    with pytest.raises(InvalidObjectError) as info:
        object_reference(Counted())
    assert shown == []
    assert str(info.value).startswith("cannot refer to Counted Counted(): expected")
    assert len(shown) == 1


def test_client_models_in_a_description_are_named_not_printed_whole() -> None:
    """A client model's repr pretty-prints all of it (seconds for a list of a thousand
    pods, to show 80 characters): a description names it by its class and its name, which
    a human needs to find it (``<V1Pod>`` alone told not which of a list's pods it was)."""
    metadata = client.V1ObjectMeta(name="web-0", namespace="prod")
    pod = client.V1Pod(metadata=metadata)
    with pytest.raises(InvalidObjectError) as info:
        object_reference([pod] * 1000)
    assert str(info.value).startswith("cannot refer to list [<V1Pod 'web-0'>, <V1Pod 'web-0'>,")
    metadata.namespace = "Prod"
    with pytest.raises(InvalidObjectError, match=r"^cannot refer to V1Pod <V1Pod 'web-0'>: its"):
        object_reference(pod)
    with pytest.raises(InvalidObjectError, match=r"^cannot refer to V1Pod <V1Pod>: it has no"):
        object_reference(client.V1Pod(metadata=client.V1ObjectMeta(namespace="prod")))


@pytest.mark.parametrize(
    "flat",
    [
        # as Kopf's k8s_ref and kubectl write it
        {"apiVersion": "v1", "kind": "Pod", "name": "web-0", "namespace": "prod", "uid": "u-1"},
        # as the client's V1ObjectReference(...).to_dict() writes it
        client.V1ObjectReference(
            api_version="v1", kind="Pod", name="web-0", namespace="prod", uid="u-1"
        ).to_dict(),
    ],
    ids=["camelCase", "snake_case"],
)
def test_a_flat_reference_mapping_is_referenced(flat: dict[str, object]) -> None:
    """``involved`` may be a flat reference in either spelling; None values count as absent."""
    assert object_reference(flat) == models.ObjectReference(
        kind="Pod", namespace="prod", name="web-0", uid="u-1", api_version="v1"
    )


def test_a_flat_reference_to_a_cluster_scoped_object_has_no_namespace() -> None:
    """Kopf writes ``namespace: None`` for a cluster-scoped object."""
    ref = object_reference(
        {"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "u-n", "namespace": None}
    )
    assert (ref.kind, ref.name, ref.namespace, ref.uid) == ("Node", "node-1", "", "u-n")


def test_a_reference_is_a_snapshot_though_equal_ones_are_shared() -> None:
    """An object read again unchanged gives the same reference; a change gives a new one.

    References are shared (making a frozen dataclass is the costly part of reading a pod),
    so the test checks what sharing must never change: each read sees the object as it is
    then, and an earlier reference keeps the fields it was read with.
    """
    metadata = _meta()
    pod = client.V1Pod(api_version="v1", kind="Pod", metadata=metadata)
    first = object_reference(pod)
    assert object_reference(client.V1Pod(api_version="v1", kind="Pod", metadata=_meta())) is first
    metadata.resource_version = "8"
    metadata.namespace = "staging"
    second = object_reference(pod)
    assert (second.namespace, second.resource_version) == ("staging", "8")
    assert (first.namespace, first.resource_version) == ("prod", "7")
    flat = {"kind": "Pod", "name": "web", "namespace": "prod", "uid": "u1"}
    assert object_reference(dict(flat, fieldPath="spec")).field_path == "spec"
    assert object_reference(flat).field_path == ""


def test_the_shared_references_stay_bounded() -> None:
    """More distinct objects than the table holds: it starts again, and every read is right."""
    limit = references._MAX_SHARED
    for index in range(limit + 10):
        ref = object_reference({"kind": "Pod", "name": f"p{index}", "namespace": "ns"})
        assert ref.name == f"p{index}"
        assert len(references._shared_refs) <= limit
    assert object_reference({"kind": "Pod", "name": "p0", "namespace": "ns"}).name == "p0"


class _Caseless(str):
    """Text that compares and hashes without case (a str subclass with looser equality)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.casefold() == other.casefold()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.casefold())


class _Tagged(str):
    """A str subclass carrying more than its text (as ruamel.yaml's quoted scalars do)."""

    tag = "!quoted"


def test_text_of_a_str_subclass_is_read_as_plain_text() -> None:
    """Fields given as ``str`` subclasses are kept as plain ``str``: a reference holds none of
    the caller's objects, and a subclass's own idea of equality cannot hand back the shared
    reference of other text (it used to: ``BLUE`` came back as the earlier ``blue``)."""
    plain = object_reference({"kind": "Widget", "name": "blue", "namespace": "prod"})
    loose = object_reference({"kind": "Widget", "name": _Caseless("BLUE"), "namespace": "prod"})
    assert loose.name == "BLUE"
    assert type(loose.name) is str
    metadata = client.V1ObjectMeta(name=_Caseless("BLUE"), namespace="prod")
    from_model = object_reference(client.V1Pod(api_version="v1", kind="Pod", metadata=metadata))
    assert from_model.name == "BLUE"
    tagged = object_reference(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": _Tagged("web"), "namespace": "p"}}
    )
    assert [type(value) for value in dataclasses.astuple(tagged)] == [str] * 7
    assert object_reference({"kind": "Widget", "name": "blue", "namespace": "prod"}) is plain


def test_a_cluster_scoped_object_needs_no_namespace_known_valid(monkeypatch) -> None:
    """The valid namespaces are kept in a set another thread empties when it is full; while
    it was empty, every cluster-scoped object's reference was refused: its namespace ``''``
    "is no DNS label". No namespace is checked against nothing."""
    monkeypatch.setattr(references, "_namespaces", set())
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
    assert references.object_reference(node).namespace == ""
    assert references._namespaces == set()
