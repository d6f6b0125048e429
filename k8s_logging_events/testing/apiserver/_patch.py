"""PATCH bodies of :class:`~k8s_logging_events.testing.LocalApiServer`: three patch formats.

Part of the local API server on the test side of the pipeline. The server applies a patch to
the stored object rendered in the request's API version, then decodes the result again:

* ``application/json-patch+json`` -- RFC 6902 (``add``, ``remove``, ``replace``, ``move``,
  ``copy``, ``test``); a failing operation is the API server's obscure 422 ``the server
  rejected our request due to an error in our request``;
* ``application/merge-patch+json`` -- RFC 7386: objects merge, ``null`` deletes;
* ``application/strategic-merge-patch+json`` -- for every Event field the same as a merge
  patch; the ``$patch`` (``replace``/``delete``/``merge``), ``$retainKeys`` and
  ``$deleteFromPrimitiveList`` directives are honoured, ``$setElementOrder`` is ignored, and
  the two metadata lists merge the way their patch strategies say (``finalizers`` as a set,
  ``ownerReferences`` by ``uid``).
"""

from __future__ import annotations

import copy
from typing import Any

from k8s_logging_events.testing.apiserver._errors import (
    ApiError,
    bad_request,
    status_body,
    unknown_error,
)

_MERGE_KEYS = {"ownerReferences": "uid"}
"""Lists of maps that strategic merge patch merges by a key (``patchMergeKey``)."""
_SET_LISTS = frozenset({"finalizers"})
"""Lists of scalars that strategic merge patch merges as sets (``patchStrategy:merge``)."""


class JsonPatchError(Exception):
    """A JSON-patch operation could not be applied."""


def json_patch_failed() -> ApiError:
    """The 422 the API server answers when a JSON patch does not apply.

    The handler builds it with ``NewGenericServerResponse``, which throws the real reason
    away: the message is always the same, and the details are empty.
    """
    message = "the server rejected our request due to an error in our request"
    return ApiError(status_body(422, "Invalid", message, {}))


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch; neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def _unescape_pointer(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise JsonPatchError("path is not a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer {path!r}")
    return [_unescape_pointer(token) for token in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if allow_end and token == "-":  # noqa: S105 - a JSON pointer, not a password
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise JsonPatchError(f"invalid array index {token!r}")
    index = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if index > limit:
        raise JsonPatchError(f"array index {index} out of bounds")
    return index


def _step(node: Any, token: str, op: str) -> tuple[Any, Any]:
    """The container ``node`` and the place ``token`` names in it: a key, or a list index.

    The place must exist, except for ``add``, which may also name the end of a list (``-``).
    """
    if isinstance(node, dict):
        if op != "add" and token not in node:
            raise JsonPatchError(f"doc is missing key: {token}")
        return node, token
    if isinstance(node, list):
        return node, _index(node, token, allow_end=op == "add")
    raise JsonPatchError(f"cannot {op} at {token} in a {type(node).__name__}")


def _place(doc: Any, tokens: list[str], op: str) -> tuple[Any, Any]:
    """The container and place a (non-empty) pointer leads to, for operation ``op``."""
    node = doc
    for token in tokens[:-1]:
        container, place = _step(node, token, "get")
        node = container[place]
    return _step(node, tokens[-1], op)


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    container, place = _place(doc, tokens, "get")
    return container[place]


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    container, place = _place(doc, tokens, "add")
    if isinstance(container, list):
        container.insert(place, value)
    else:
        container[place] = value
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    container, place = _place(doc, tokens, "remove")
    del container[place]
    return doc


def _replace(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    container, place = _place(doc, tokens, "replace")
    container[place] = value
    return doc


def _value(operation: dict[str, Any]) -> Any:
    if "value" not in operation:
        raise JsonPatchError(f"{operation.get('op')} operation has no value")
    return copy.deepcopy(operation["value"])


def apply_json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch to a copy of ``document`` and return the result.

    Raises:
        ApiError: 400 when ``operations`` is not a list of operations.
        JsonPatchError: an operation does not apply (the server answers 422).
    """
    if not isinstance(operations, list):
        kind = "object" if isinstance(operations, dict) else type(operations).__name__
        raise bad_request(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict):
            raise JsonPatchError("operation is not an object")
        op = operation.get("op")
        tokens = _split_pointer(operation.get("path"))
        if op == "add":
            doc = _add(doc, tokens, _value(operation))
        elif op == "remove":
            doc = _remove(doc, tokens)
        elif op == "replace":
            doc = _replace(doc, tokens, _value(operation))
        elif op == "test":
            try:
                current = _get(doc, tokens)
            except JsonPatchError:
                current = None
            if current != operation.get("value"):
                raise JsonPatchError(f"testing value {operation.get('path')} failed")
        elif op in ("move", "copy"):
            source = _split_pointer(operation.get("from"))
            value = copy.deepcopy(_get(doc, source))
            if op == "move":
                doc = _remove(doc, source)
            doc = _add(doc, tokens, value)
        else:
            raise JsonPatchError(f"Unexpected kind: {op}")
    return doc


def apply_strategic_merge_patch(target: Any, patch: dict[str, Any]) -> Any:
    """Apply a strategic merge patch to Event or Namespace JSON; neither argument is modified.

    Raises:
        ApiError: a directive is malformed (400) or names an unknown patch type (500).
    """
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive is not None:
        if directive == "delete":
            return None
        if directive == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
        if directive != "merge":
            raise unknown_error(f"invalid patch type: {directive}")
    result = dict(target)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise bad_request("invalid patch: $retainKeys must be a list")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [item for item in result[name] if item not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _smp_map(current if isinstance(current, dict) else {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = value
    return result


def _smp_list(key: str, current: Any, patch: list[Any]) -> list[Any]:
    existing = list(current) if isinstance(current, list) else []
    if key in _SET_LISTS:
        union = list(existing)
        union.extend(item for item in patch if item not in union)
        return union
    merge_key = _MERGE_KEYS.get(key)
    if merge_key is None:
        return copy.deepcopy(patch)
    merged_maps = [dict(item) for item in existing if isinstance(item, dict)]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"invalid patch: {key} entries must be objects")
        position = next(
            (i for i, old in enumerate(merged_maps) if old.get(merge_key) == item.get(merge_key)),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del merged_maps[position]
            continue
        if position is None:
            merged_maps.append({k: v for k, v in item.items() if not k.startswith("$")})
        else:
            patched = _smp_map(merged_maps[position], item)
            if patched is not None:
                merged_maps[position] = patched
    return merged_maps
