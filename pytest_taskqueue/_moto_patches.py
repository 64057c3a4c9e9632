"""Make moto's ``TransactWriteItems`` and key ``Query`` cost what they touch, not the table size.

moto (5.x) backs up every table a transaction names with ``copy.deepcopy`` before applying it, to
roll back if a condition fails. That is O(items in the table) per transaction: measured here, 19 ms
at 300 items and 310 ms at 1,800, so a conformance run, which writes thousands of events into one
table, slows until requests time out. The harness serialises moto's requests (``_moto_server``), so
remembering just the items the transaction names and putting them back on failure is an equivalent
rollback. The observable behaviour (all or nothing, ``TransactionCanceledException`` with its
reasons) is moto's own; only the backup changes.

``install_partition_queries`` does the same for queries: moto answers a ``Query`` on a table's key by
sorting *every* item of the table and then keeping one partition (about 45 ms at 8,000 items here);
the patched query looks at the one partition instead (same results, same order), leaves index
queries alone, and steps aside if moto's ``Table.query`` signature is not the one it knows.

Caches remember pure functions moto recomputes on every request: ``install_condition_cache`` the
syntax tree of a ``ConditionExpression`` (with the names and values it uses; the tree's nodes are
never changed after they are built), ``install_update_expression_cache`` the syntax tree of an
``UpdateExpression`` (parsed twice per update; moto validates and applies a deep copy of it),
``install_method_name_cache`` the action names of a response class (moto lists them with
``inspect.getmembers`` per request), ``install_serializer_key_cache`` which keys of a result ``dict``
may hold each field of the response (asked of six alias providers per field, per response).
``install_traversal_memo`` walks an update's syntax tree as moto does (ten walks per update, one per
check) but remembers per node type the answers to the ``isinstance`` tests on abstract classes that
dominated each walk; ``install_update_check_memo`` skips the three walks whose verdict depends only
on the update's text, names and table key once they passed for that combination; and
``install_tree_copy`` makes the validator's deep copy of the tree directly (the same copy, built
without ``copy.deepcopy``'s generic machinery). Measured in-process (best of five, shared machine at
load 5-8): parsing and validating the reference's claim update from 0.88 to 0.42 ms of CPU (before
the check memo), its three transactions from 1.8 to 1.2 ms each; with the fast path of
``_moto_server``, a consistent GetItem of a 15-attribute task item from 1.9-2.4 to 0.7-0.8 ms and a
four-event history Query from 3.2-3.3 to 1.0-1.3 ms.

The transaction patch checks the moto internals it relies on and leaves moto untouched (with one
line on stderr) when they are not there, so a moto upgrade degrades speed, not correctness.
"""

from __future__ import annotations

import copy
import sys
from typing import Any, cast

__all__ = [
    "install_condition_cache",
    "install_method_name_cache",
    "install_partition_queries",
    "install_serializer_key_cache",
    "install_traversal_memo",
    "install_tree_copy",
    "install_update_check_memo",
    "install_update_expression_cache",
    "patch_transactions",
]


class _CopyExceptTables:
    """Stands in for the ``copy`` module inside moto's transaction code: tables are not copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, self._table_type) else copy.deepcopy(value, memo)


def patch_transactions() -> bool:
    """Install the per-item rollback; return False (and say why on stderr) when it cannot apply."""
    try:
        import moto.dynamodb.models as models
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table
    except ImportError as exc:  # pragma: no cover - moto layout changed
        print(f"moto transaction patch not applied: {exc}", file=sys.stderr)
        return False
    backend = getattr(models, "DynamoDBBackend", None)
    original = getattr(backend, "transact_write_items", None)
    if backend is None or original is None or getattr(models, "copy", None) is not copy:
        print("moto transaction patch not applied: moto internals differ", file=sys.stderr)
        return False
    no_table_copies = _CopyExceptTables(Table)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        touched: list[tuple[Any, Any, Any, Any]] = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            key = op.get("Key") or op.get("Item") or {}
            if table is None or table.hash_key_attr not in key:
                continue
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            old = copy.deepcopy(table.get_item(hash_key, range_key))
            touched.append((table, hash_key, range_key, old))
        setattr(models, "copy", no_table_copies)  # noqa: B010 - swap moto's module global
        try:
            original(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, old in reversed(touched):
                if range_key is None:
                    if old is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = old
                elif old is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = old
            raise
        finally:
            setattr(models, "copy", copy)  # noqa: B010

    backend.transact_write_items = transact_write_items
    return True


_KNOWN_QUERY_PARAMETERS = [
    "self",
    "hash_key",
    "range_comparison",
    "range_objs",
    "limit",
    "exclusive_start_key",
    "scan_index_forward",
    "projection_expressions",
    "index_name",
]


def install_partition_queries() -> bool:
    """Make moto's base-table ``Query`` read one partition, not the whole table; True if installed.

    Works by shadowing ``Table.all_items`` on the table object for the duration of the call, which
    is only safe while no other request runs (``SerialisedApp``).
    """
    import inspect

    from moto.dynamodb.models.table import Table

    original = Table.query
    if getattr(original, "_taskqueue_partition_query", False):
        return True
    if (
        list(inspect.signature(original).parameters)[: len(_KNOWN_QUERY_PARAMETERS)]
        != _KNOWN_QUERY_PARAMETERS
    ):
        return False
    index_position = _KNOWN_QUERY_PARAMETERS.index("index_name") - 2  # in *args, after self and hash_key

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[index_position] if len(args) > index_position else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key)  # .get: the table's defaultdict must not grow
        if partition is None:
            items: list[Any] = []
        elif self.range_key_attr:
            items = list(partition.values())
        else:
            items = [partition]
        self.all_items = lambda: items
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    query._taskqueue_partition_query = True  # type: ignore[attr-defined]
    setattr(Table, "query", query)  # noqa: B010 (a method replaced on purpose)
    return True


#: Parsed condition expressions kept; the cache is emptied when it reaches this size.
_CONDITION_CACHE_SIZE = 4096


def install_condition_cache() -> bool:
    """Parse each distinct condition expression (with its names and values) once; True if installed.

    moto parses a ``ConditionExpression`` when it validates the request and again when it applies
    it, about a millisecond each. The parse is a pure function of the expression, the attribute
    names and the attribute values, so its result (and the names and values it found, which moto
    checks for unused ones) is remembered under those three. Failed parses are not remembered.
    """
    import json

    from moto.dynamodb.comparisons import ConditionExpressionParser

    original = ConditionExpressionParser.parse
    if getattr(original, "_taskqueue_cached", False):
        return True
    if not (hasattr(ConditionExpressionParser, "__init__") and callable(original)):
        return False
    cache: dict[tuple[Any, str, str], tuple[Any, list[str], list[str]]] = {}

    def parse(self: Any) -> Any:
        try:
            key = (
                self.condition_expression,
                json.dumps(self.expression_attribute_names, sort_keys=True),
                json.dumps(self.expression_attribute_values, sort_keys=True),
            )
        except (TypeError, ValueError):
            return original(self)
        hit = cache.get(key)
        if hit is not None:
            tree, names, values = hit
            self.expr_attr_names_found = list(names)
            self.expr_attr_values_found = list(values)
            return tree
        tree = original(self)
        if len(cache) >= _CONDITION_CACHE_SIZE:
            cache.clear()
        cache[key] = (tree, list(self.expr_attr_names_found), list(self.expr_attr_values_found))
        return tree

    parse._taskqueue_cached = True  # type: ignore[attr-defined]
    setattr(ConditionExpressionParser, "parse", parse)  # noqa: B010 (a method replaced on purpose)
    return True


def install_method_name_cache() -> bool:
    """List a response class's action methods once, not on every request; True if installed."""
    import functools

    import moto.core.responses as responses

    original = getattr(responses, "method_names_from_class", None)
    if original is None:
        return False
    if getattr(original, "_taskqueue_cached", False):
        return True
    cached = functools.lru_cache(maxsize=None)(original)

    def method_names_from_class(clazz: object) -> list[str]:
        return list(cached(clazz))

    method_names_from_class._taskqueue_cached = True  # type: ignore[attr-defined]
    setattr(responses, "method_names_from_class", method_names_from_class)  # noqa: B010
    return True


#: Parsed update expressions kept; the cache is emptied when it reaches this size.
_UPDATE_EXPRESSION_CACHE_SIZE = 4096


def install_update_expression_cache() -> bool:
    """Parse each distinct ``UpdateExpression`` once; True if installed.

    moto parses an update expression twice per ``UpdateItem`` (once to check the names and values it
    uses, once to apply it), on every request. The syntax tree is a pure function of the text, and
    moto only reads it: the checks search it, and the validator that applies it works on its own
    deep copy (checked here; without that copy the cache is not installed). Failed parses raise as
    before and are not remembered.
    """
    import inspect

    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import Validator

    original = UpdateExpressionParser.make
    if getattr(original, "_taskqueue_cached", False):
        return True
    try:
        copies = "deepcopy(expression)" in inspect.getsource(Validator.__init__)
    except (OSError, TypeError):  # pragma: no cover - no source to check
        copies = False
    if not copies:
        return False
    cache: dict[str, Any] = {}

    def make(cls: type, expression: str) -> Any:
        tree = cache.get(expression)
        if tree is None:
            tree = original.__func__(cls, expression)
            if len(cache) >= _UPDATE_EXPRESSION_CACHE_SIZE:
                cache.clear()
            cache[expression] = tree
        return tree

    make._taskqueue_cached = True  # type: ignore[attr-defined]
    setattr(UpdateExpressionParser, "make", classmethod(make))  # noqa: B010 (a method replaced on purpose)
    return True


def install_traversal_memo() -> bool:
    """Walk update-expression trees with memoised type checks; True if installed.

    moto validates an update by walking its syntax tree once per check (ten walks), and at every node
    asks ``isinstance`` of abstract classes (slow: ``ABCMeta.__instancecheck__``) and rebuilds the
    walker's table of node types. The replacement walk is moto's, step for step (children first, in
    order, with the same hook before each child; a processed node takes its place in its parent),
    with the answers to "is this type a ``Node``" and "does this walker process this type" remembered
    per type and walker class (nothing registers virtual subclasses of these classes, and every
    walker's table of node types is fixed by its class) and each walker's table built once. When a
    walker brings its own ``nodes_to_be_processed`` or walk, nothing is installed.
    """
    import moto.dynamodb.parsing.validators  # noqa: F401 - the walkers, to check them below
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node  # type: ignore[attr-defined]

    if getattr(DepthFirstTraverser.traverse_node_recursively, "_taskqueue_memo", False):
        return True
    for subclass in _all_subclasses(DepthFirstTraverser):
        if "nodes_to_be_processed" in vars(subclass) or "traverse_node_recursively" in vars(subclass):
            return False  # a walker of its own: this memo does not know it
    is_node: dict[type, bool] = {}
    processed: dict[tuple[type, type], bool] = {}

    def table(self: Any) -> dict[type, Any]:
        try:
            return cast(dict[type, Any], self.__dict__["_taskqueue_table"])
        except KeyError:
            mapping = self._processing_map()
            self.__dict__["_taskqueue_table"] = mapping
            return cast(dict[type, Any], mapping)

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        return tuple(table(self))

    def process(self: Any, node: Any) -> Any:
        for class_key, processor in table(self).items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    def processes(self: Any, kind: type) -> bool:
        key = (type(self), kind)
        try:
            return processed[key]
        except KeyError:
            answer = processed[key] = issubclass(kind, self.nodes_to_be_processed())
            return answer

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        kind = type(node)
        node_kind = is_node.get(kind)
        if node_kind is None:
            node_kind = is_node[kind] = isinstance(node, Node)
        if not node_kind:
            return node
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                self.pre_processing_of_child(node, i)
                self.traverse_node_recursively(child_node, i)
        if processes(self, kind):
            node = self.process(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    traverse_node_recursively._taskqueue_memo = True  # type: ignore[attr-defined]
    DepthFirstTraverser.nodes_to_be_processed = nodes_to_be_processed
    DepthFirstTraverser.process = process
    DepthFirstTraverser.traverse_node_recursively = traverse_node_recursively
    return True


#: Remembered key lists of the response serializer; the cache is emptied when it reaches this size.
_SERIALIZER_KEY_CACHE_SIZE = 16384


def install_serializer_key_cache() -> bool:
    """Remember where the response serializer finds each field of a plain ``dict``; True if installed.

    moto serializes a response by walking the operation's botocore shapes, and for every member of
    every structure (ten per DynamoDB attribute value) builds a context and asks a chain of six alias
    providers which keys of the result object may hold it: over half of a ``GetItem``'s or
    ``Query``'s CPU. When the result object is a plain ``dict`` and the picker moto uses transforms
    nothing, the answer is a pure function of the picker's providers, the member's shape (and the
    structure it belongs to) and its name: the list of keys is computed once, by moto's own
    ``get_possible_keys``, and the value is then the first of those keys the ``dict`` holds, as moto's
    lookup finds it (a dotted key is a path, looked up by moto). Other objects (whose class or
    ``Meta`` may alias a field), pickers with response transformers and any key list that fails to
    compute go moto's way.
    """
    from moto.core import serialize

    serializer: Any = getattr(serialize, "ResponseSerializer", None)
    picker_type: Any = getattr(serialize, "AttributePicker", None)
    context_type: Any = getattr(serialize, "AttributePickerContext", None)
    lookup: Any = getattr(serialize, "get_value", None)
    missing: Any = getattr(serialize, "MISSING", None)
    original: Any = vars(serializer).get("get_value") if serializer is not None else None
    if any(part is None for part in (picker_type, context_type, lookup, missing, original)):
        return False
    if getattr(original, "_taskqueue_cached", False):
        return True
    cache: dict[tuple[Any, ...], tuple[str, ...]] = {}

    def get_value(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        if type(value) is not dict or not isinstance(picker, picker_type) or picker.response_transformers:
            return original(self, value, key, shape)
        try:
            cache_key = (
                type(picker),
                tuple(picker.alias_providers),
                shape,
                getattr(shape, "parent", None),
                key,
            )
            possible = cache.get(cache_key)
        except TypeError:  # something unhashable: no cache
            return original(self, value, key, shape)
        if possible is None:
            context = context_type(
                obj=value,
                key=key,
                shape=shape,
                operation_model=self.operation_model,
                service_model=self.operation_model.service_model,
                key_path=".".join(self.path),
            )
            try:
                possible = tuple(picker.get_possible_keys(context))
            except Exception:
                return original(self, value, key, shape)
            if len(cache) >= _SERIALIZER_KEY_CACHE_SIZE:
                cache.clear()
            cache[cache_key] = possible
        for possible_key in possible:
            found = (
                lookup(value, possible_key, missing)
                if "." in possible_key
                else value.get(possible_key, missing)
            )
            if found is not missing:
                return found
        return None

    get_value._taskqueue_cached = True  # type: ignore[attr-defined]
    setattr(serializer, "get_value", get_value)  # noqa: B010 (a method replaced on purpose)
    return True


#: Update checks remembered as passed; emptied when it reaches this size.
_UPDATE_CHECK_MEMO_SIZE = 4096


def install_update_check_memo() -> bool:
    """Skip the three checks of an update that depend only on its text, names and key; True if installed.

    The first three of moto's ten validation walks of an update (at most one SET/ADD/REMOVE/DELETE
    clause each, no overlapping paths, no key attribute updated) read the parsed tree, the
    expression attribute names and the table's key attributes, and change nothing: each returns
    every node as it found it. Once they passed for one parsed tree (the cached one of
    ``install_update_expression_cache``), names and key, they pass again: the walks are skipped for
    that combination. A check that fails is not remembered, so it fails again the same way.
    Installed only when moto's validator runs its walkers in a plain loop and these three do nothing
    before a child (checked).
    """
    import inspect
    import json

    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]
    from moto.dynamodb.parsing.validators import (
        ActionCountValidator,
        OverlappingPathsValidator,
        UpdateExpressionValidator,
        UpdateHashRangeKeyValidator,
        Validator,
    )

    if getattr(UpdateExpressionValidator.validate, "_taskqueue_memo", False):
        return True
    pure = (ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator)
    try:
        plain_loop = "for processor in self.processors" in inspect.getsource(Validator.validate)
    except (OSError, TypeError):  # pragma: no cover - no source to check
        plain_loop = False
    if (
        not plain_loop
        or "validate" in vars(UpdateExpressionValidator)
        or "__init__" in vars(UpdateExpressionValidator)
        or any(
            kind.pre_processing_of_child is not DepthFirstTraverser.pre_processing_of_child for kind in pure
        )
    ):
        return False
    passed: set[tuple[Any, str, tuple[str, ...]]] = set()
    init = Validator.__init__

    def __init__(self: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        init(self, expression, *args, **kwargs)
        self._taskqueue_source = expression

    def validate(self: Any) -> Any:
        try:
            key: tuple[Any, str, tuple[str, ...]] | None = (
                self._taskqueue_source,
                json.dumps(self.expression_attribute_names, sort_keys=True),
                tuple(self.table.table_key_attrs),
            )
            known = key in passed
        except (TypeError, ValueError, AttributeError):
            key, known = None, False
        pending = sum(isinstance(processor, pure) for processor in self.processors)
        node = self.node_to_validate
        for processor in self.processors:
            if isinstance(processor, pure):
                if known:
                    continue
                node = processor.traverse(node)
                pending -= 1
                if pending == 0 and key is not None:
                    if len(passed) >= _UPDATE_CHECK_MEMO_SIZE:
                        passed.clear()
                    passed.add(key)
            else:
                node = processor.traverse(node)
        return node

    validate._taskqueue_memo = True  # type: ignore[attr-defined]
    setattr(UpdateExpressionValidator, "__init__", __init__)  # noqa: B010 (a method replaced on purpose)
    setattr(UpdateExpressionValidator, "validate", validate)  # noqa: B010
    return True


class _NotPlainTree(Exception):
    """A syntax tree ``install_tree_copy`` does not copy itself."""


def install_tree_copy() -> bool:
    """Deep-copy update-expression syntax trees without ``copy.deepcopy``'s generic machinery.

    moto's update validator deep-copies the parsed tree before working on it (one copy per update).
    The tree is plain: nodes with ``type``, ``children`` and ``parent`` only, each node the child of
    exactly its parent, leaves holding strings and numbers. For such a tree (checked while copying)
    the copy is built directly: new nodes of the same classes, attributes in the same order, each
    child's ``parent`` the new parent, the same strings and numbers: what ``copy.deepcopy`` builds.
    Anything else (another attribute, a shared node, a leaf of another type, a class with its own
    copy hooks, a call with a memo) is copied by ``copy.deepcopy`` as before.
    """
    import moto.dynamodb.parsing.validators as validators
    from moto.dynamodb.parsing.ast_nodes import Node  # type: ignore[attr-defined]

    current = getattr(validators, "deepcopy", None)
    if getattr(current, "_taskqueue_tree_copy", False):
        return True
    if current is not copy.deepcopy:
        return False
    atoms = (str, int, float, bool, type(None))
    plain_class: dict[type, bool] = {}

    def plain(kind: type) -> bool:
        known = plain_class.get(kind)
        if known is None:
            known = plain_class[kind] = (
                getattr(kind, "__deepcopy__", None) is None
                and getattr(kind, "__reduce_ex__", None) is getattr(object, "__reduce_ex__", None)
                and not hasattr(kind, "__slots__")
            )
        return known

    def copy_node(node: Any, parent: Any) -> Any:
        kind = type(node)
        attributes = node.__dict__
        if not plain(kind) or attributes.keys() != {"type", "children", "parent"}:
            raise _NotPlainTree
        new = object.__new__(kind)
        copied: dict[str, Any] = {}
        for name, value in attributes.items():
            if name == "parent":
                copied[name] = parent
            elif name == "children" and value is not None:
                children = []
                for child in value:
                    if isinstance(child, Node):
                        if child.parent is not node:
                            raise _NotPlainTree
                        children.append(copy_node(child, new))
                    elif type(child) in atoms:
                        children.append(child)
                    else:
                        raise _NotPlainTree
                copied[name] = children
            elif name == "type" and type(value) is str:
                copied[name] = value
            elif name == "children":
                copied[name] = None
            else:
                raise _NotPlainTree
        new.__dict__.update(copied)
        return new

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if memo is None and isinstance(value, Node) and value.parent is None:
            try:
                return copy_node(value, None)
            except (_NotPlainTree, RecursionError):
                pass
        return copy.deepcopy(value, memo)

    deepcopy._taskqueue_tree_copy = True  # type: ignore[attr-defined]
    setattr(validators, "deepcopy", deepcopy)  # noqa: B010 - swap moto's module global
    return True


def _all_subclasses(cls: type) -> list[type]:
    found: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found
