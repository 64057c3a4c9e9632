"""The stand-in answers exactly as moto's own WSGI application does.

A corpus of requests (successes and every kind of error the reference can meet) is played, in
order and on a fresh moto, through the stand-in's application (``build_app()``: the DynamoDB fast
path and the speed patches of ``_moto_patches``) and through moto's plain dispatcher in a separate
process where nothing is patched, each request through the server's own environ builder. Every
answer must match: the status, the headers (names, order and values; the random request id and the
CRC of a body holding a timestamp excepted, each checked for consistency instead) and the JSON
body with its timestamps blanked. A request moto fails on raises the same exception either way
(the server answers it 500). In-process, ``build_app(fast_path=False)`` (patched, through Flask)
is compared with the fast path as well, which is what tells a fast-path difference from a patch's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_taskqueue._moto_server import (
    DynamoDBFastPath,
    _call,
    _environ,
    _Request,
    build_app,
)

AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
TABLE = "jobs"
KEY = {"pk": {"S": "a"}, "sk": {"S": "1"}}


def call(
    target: str, body: dict[str, Any] | bytes, *headers: tuple[str, str], method: str = "POST"
) -> _Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    default = [
        ("host", "127.0.0.1:8000"),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", f"DynamoDB_20120810.{target}"),
        ("authorization", AUTH),
        ("content-length", str(len(data))),
    ]
    names = {name for name, _ in headers}
    return _Request(method, "/", "HTTP/1.1", [h for h in default if h[0] not in names] + list(headers), data)


def put(item: dict[str, Any], condition: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"TableName": TABLE, "Item": item}
    if condition:
        op["ConditionExpression"] = condition
    return {"Put": op}


def transition(old: str, new: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": TABLE,
            "Key": KEY,
            "UpdateExpression": "SET #s = :new",
            "ConditionExpression": "#s = :old",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":new": {"S": new}, ":old": {"S": old}},
        }
    }


CREATE = {
    "TableName": TABLE,
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
NOT_EXISTS = "attribute_not_exists(pk)"
RICH = {
    "pk": {"S": "rich"},
    "sk": {"S": "1"},
    "n": {"N": "-1.5e3"},
    "b": {"B": "AAEC"},
    "ss": {"SS": ["x", "y"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": ["AA==", "AQ=="]},
    "m": {"M": {"inner": {"L": [{"S": "a"}, {"N": "1"}, {"BOOL": True}, {"NULL": True}, {"M": {}}]}}},
    "l": {"L": []},
    "t": {"BOOL": False},
    "nil": {"NULL": True},
}

#: (name, request, goes through the fast path), played in this order on one fresh backend.
CORPUS: list[tuple[str, _Request, bool]] = [
    ("CreateTable", call("CreateTable", CREATE), True),
    ("CreateTable again: ResourceInUseException", call("CreateTable", CREATE), True),
    ("DescribeTable", call("DescribeTable", {"TableName": TABLE}), True),
    ("DescribeTable: ResourceNotFoundException", call("DescribeTable", {"TableName": "nope"}), True),
    ("ListTables", call("ListTables", {}), True),
    ("PutItem", call("PutItem", {"TableName": TABLE, "Item": {**KEY, "status": {"S": "PENDING"}}}), True),
    (
        "PutItem: ConditionalCheckFailedException",
        call("PutItem", {"TableName": TABLE, "Item": KEY, "ConditionExpression": NOT_EXISTS}),
        True,
    ),
    (
        "PutItem: ConditionalCheckFailedException with the old item",
        call(
            "PutItem",
            {
                "TableName": TABLE,
                "Item": KEY,
                "ConditionExpression": NOT_EXISTS,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
        ),
        True,
    ),
    (
        "PutItem: ValidationException (no sort key)",
        call("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "x"}}}),
        True,
    ),
    ("GetItem", call("GetItem", {"TableName": TABLE, "Key": KEY, "ConsistentRead": True}), True),
    ("PutItem of every attribute type", call("PutItem", {"TableName": TABLE, "Item": RICH}), True),
    (
        "GetItem of every attribute type",
        call("GetItem", {"TableName": TABLE, "Key": {"pk": RICH["pk"], "sk": RICH["sk"]}}),
        True,
    ),
    (
        "GetItem of a missing item",
        call("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "z"}, "sk": {"S": "z"}}}),
        True,
    ),
    ("GetItem: ResourceNotFoundException", call("GetItem", {"TableName": "nope", "Key": KEY}), True),
    (
        "GetItem: ValidationException (wrong key)",
        call("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "a"}}}),
        True,
    ),
    (
        "UpdateItem",
        call(
            "UpdateItem",
            {
                "TableName": TABLE,
                "Key": KEY,
                "UpdateExpression": "SET #n = if_not_exists(#n, :zero) + :one, lease = :l",
                "ConditionExpression": "#s = :pending",
                "ExpressionAttributeNames": {"#n": "attempts", "#s": "status"},
                "ExpressionAttributeValues": {
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":l": {"N": "5"},
                    ":pending": {"S": "PENDING"},
                },
                "ReturnValues": "ALL_NEW",
            },
        ),
        True,
    ),
    (
        "UpdateItem: ConditionalCheckFailedException",
        call(
            "UpdateItem",
            {
                "TableName": TABLE,
                "Key": KEY,
                "UpdateExpression": "SET lease = :l",
                "ConditionExpression": "#s = :done",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {":l": {"N": "6"}, ":done": {"S": "COMPLETED"}},
            },
        ),
        True,
    ),
    (
        "UpdateItem: ValidationException (syntax)",
        call("UpdateItem", {"TableName": TABLE, "Key": KEY, "UpdateExpression": "SET = :l"}),
        True,
    ),
    (
        "UpdateItem: ValidationException (unused value)",
        call(
            "UpdateItem",
            {
                "TableName": TABLE,
                "Key": KEY,
                "UpdateExpression": "SET lease = :l",
                "ExpressionAttributeValues": {":l": {"N": "1"}, ":unused": {"N": "2"}},
            },
        ),
        True,
    ),
    (
        "UpdateItem: ValidationException (the key)",
        call(
            "UpdateItem",
            {
                "TableName": TABLE,
                "Key": KEY,
                "UpdateExpression": "SET pk = :l",
                "ExpressionAttributeValues": {":l": {"S": "b"}},
            },
        ),
        True,
    ),
    (
        "TransactWriteItems",
        call(
            "TransactWriteItems",
            {
                "TransactItems": [
                    put({"pk": {"S": "b"}, "sk": {"S": "1"}}, NOT_EXISTS),
                    put({"pk": {"S": "b"}, "sk": {"S": "2"}}, NOT_EXISTS),
                    transition("PENDING", "PROCESSING"),
                ]
            },
        ),
        True,
    ),
    (
        "TransactWriteItems: TransactionCanceledException with its reasons",
        call(
            "TransactWriteItems",
            {
                "TransactItems": [
                    put({"pk": {"S": "c"}, "sk": {"S": "1"}}, NOT_EXISTS),
                    put({"pk": {"S": "b"}, "sk": {"S": "2"}}, NOT_EXISTS),
                    transition("PENDING", "PROCESSING"),
                ]
            },
        ),
        True,
    ),
    (
        "TransactWriteItems: ValidationException (one item twice)",
        call("TransactWriteItems", {"TransactItems": [transition("PROCESSING", "X"), transition("X", "Y")]}),
        True,
    ),
    (
        "Query",
        call(
            "Query",
            {
                "TableName": TABLE,
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :p)",
                "ExpressionAttributeValues": {":pk": {"S": "b"}, ":p": {"S": "1"}},
            },
        ),
        True,
    ),
    ("Scan", call("Scan", {"TableName": TABLE}), True),
    (
        "DeleteItem",
        call("DeleteItem", {"TableName": TABLE, "Key": {"pk": {"S": "b"}, "sk": {"S": "2"}}}),
        True,
    ),
    ("an unknown X-Amz-Target", call("NoSuchAction", {}), True),
    ("malformed JSON", call("GetItem", b'{"TableName": "jobs", "Key": '), True),
    ("a JSON list", call("GetItem", b"[1, 2]"), True),
    ("an empty body", call("GetItem", b""), True),
    # Not DynamoDB API calls as the fast path knows them: moto's dispatcher answers both ways.
    (
        "unsigned (moto routes it elsewhere)",
        call("GetItem", {"TableName": TABLE, "Key": KEY}, ("authorization", "")),
        False,
    ),
    ("with an Origin", call("GetItem", {"TableName": TABLE, "Key": KEY}, ("origin", "http://x")), True),
    ("a GET", call("ListTables", b"", method="GET"), False),
    ("another path", _Request("POST", "/other", "HTTP/1.1", call("ListTables", {}).headers, b"{}"), False),
    ("a form body", call("ListTables", b"{}", ("content-type", "application/x-www-form-urlencoded")), False),
    ("the old API version", call("ListTables", {}, ("x-amz-target", "DynamoDB_20111205.ListTables")), False),
]

#: Headers whose values are random or follow the body, checked for consistency instead of equality.
VARYING = {"x-amzn-requestid", "x-amz-crc32", "content-length"}


def blank_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: None if k.endswith("DateTime") else blank_timestamps(v) for k, v in value.items()}
    if isinstance(value, list):
        return [blank_timestamps(v) for v in value]
    return value


def answer(app: Any, request: _Request) -> list[Any]:
    """What the server would send for ``request``, normalised; or the exception it would answer 500."""
    environ = _environ(request, ("127.0.0.1", 8000), ("127.0.0.1", 50000))
    try:
        status, headers, body = _call(app, environ)
    except Exception as exc:
        return ["raised", type(exc).__name__, str(exc)]
    fields = dict((name.lower(), value) for name, value in headers)
    if "x-amz-crc32" in fields:
        assert fields["x-amz-crc32"] == str(zlib.crc32(body)), (request.target, headers)
    assert fields.get("content-length") == str(len(body))
    try:
        content: Any = blank_timestamps(json.loads(body))
    except ValueError:
        content = body.decode("latin-1")
    return [status, [[n, "" if n.lower() in VARYING else v] for n, v in headers], content]


def play(app: Any) -> list[list[Any]]:
    from moto.core.base_backend import BackendDict

    BackendDict.reset()  # a fresh moto: every backend empty
    return [answer(app, request) for _, request, _ in CORPUS]


def play_plain_moto() -> None:
    """Print the corpus's answers from moto's own dispatcher, nothing patched (run in a child)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    print(json.dumps(play(DomainDispatcherApplication(create_backend_app))))


Answers = tuple[list[list[Any]], list[list[Any]], list[list[Any]]]


@pytest.fixture(scope="module")
def answers() -> Iterator[Answers]:
    root = Path(__file__).resolve().parents[1]
    child = subprocess.run(
        [sys.executable, "-c", "from tests.test_moto_fast_path import play_plain_moto; play_plain_moto()"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    moto = json.loads(child.stdout.splitlines()[-1])
    fast, flask = build_app(), build_app(fast_path=False)
    assert isinstance(fast.app, DynamoDBFastPath) and fast.app.view is not None
    yield moto, play(flask), play(fast)


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[name for name, _, _ in CORPUS])
def test_the_stand_in_answers_as_moto_does(index: int, answers: Answers) -> None:
    moto, flask, fast = answers
    assert flask[index] == moto[index], "a speed patch changed the answer"
    assert fast[index] == flask[index], "the fast path changed the answer"


def test_the_corpus_covers_what_it_means_to() -> None:
    """The calls meant for the fast path take it (else the comparison above proves nothing), and the
    corpus holds the errors the reference meets."""
    fast_path = build_app().app
    assert isinstance(fast_path, DynamoDBFastPath)
    for name, request, expected in CORPUS:
        environ = _environ(request, ("127.0.0.1", 8000), ("127.0.0.1", 50000))
        assert fast_path.is_dynamodb_call(environ) is expected, name
    from moto.core.base_backend import BackendDict

    BackendDict.reset()
    statuses = [answer(build_app(), request) for _, request, _ in CORPUS]
    errors = {a[2].get("__type", "").rsplit("#", 1)[-1] for a in statuses if isinstance(a[2], dict)}
    assert {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
        "ValidationException",
        "ResourceNotFoundException",
        "ResourceInUseException",
    } <= errors
    assert sum(a[0] == "raised" for a in statuses) >= 2  # the unknown target and the malformed body


@pytest.mark.parametrize("error", ["BadRequest", "BadRequestKeyError", "Forbidden"])
def test_an_http_error_raised_by_the_view_is_answered_as_flask_does(
    error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's view does not raise werkzeug's HTTP errors today; if it ever does, Flask's own handling
    answers it on the fast path too. The view is swapped for one that raises, on both paths."""
    import werkzeug.exceptions

    def view(*_: Any) -> Any:
        raise getattr(werkzeug.exceptions, error)("refused")

    fast, plain = build_app(), build_app(fast_path=False)
    assert isinstance(fast.app, DynamoDBFastPath)
    monkeypatch.setattr(fast.app, "view", view)
    for app in (fast.app.app, plain.app.app_instances["dynamodb"]):  # type: ignore[attr-defined]
        for converted in app.view_functions.values():
            monkeypatch.setattr(converted, "callback", view)
    request = call("ListTables", {}, ("origin", "http://x"))
    assert answer(fast, request) == answer(plain, request)
