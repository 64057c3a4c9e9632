"""The real local backends: ElasticMQ, moto (serialised) and Toxiproxy, each called for real.

The first run on a fresh machine resolves ElasticMQ with Maven and builds Toxiproxy with Go into
the cache (``$TASKQUEUE_CACHE_DIR``); later runs reuse it.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pytest_taskqueue._backends import (
    ELASTICMQ_ARTIFACT,
    ELASTICMQ_VERSION,
    ElasticMQ,
    MotoServer,
    ToxiproxyServer,
    ensure_elasticmq,
)
from pytest_taskqueue._cache import cache_dir
from pytest_taskqueue._procs import (
    BackendStartError,
    MissingToolError,
    free_port,
    read_process,
)
from tests.process_tools import still_running

RACERS = 32


def client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(max_pool_connections=RACERS, retries={"max_attempts": 1}),
    )


def keyed_table(db: Any, prefix: str) -> str:
    """Create a fresh table keyed like the reference's (``pk`` hash, ``sk`` range); its name."""
    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    db.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return table


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(log_dir=tmp_path_factory.mktemp("moto")) as server:
        yield server


def test_elasticmq_serves_sqs_and_stops(tmp_path: Path) -> None:
    with ElasticMQ(log_dir=tmp_path) as elasticmq:
        assert elasticmq.endpoint == f"http://127.0.0.1:{elasticmq.port}"
        record = read_process(elasticmq.pid or 0)
        assert record is not None and "org.elasticmq.server.Main" in record.command
        sqs = client("sqs", elasticmq.endpoint)
        url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody='{"task_id": "t-1"}')
        received = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)["Messages"]
        assert [message["Body"] for message in received] == ['{"task_id": "t-1"}']
    assert not still_running(record)
    assert "ElasticMQ server" in (tmp_path / "elasticmq.log").read_text()


def test_moto_serves_dynamodb(moto: MotoServer) -> None:
    db = client("dynamodb", moto.endpoint)
    table = f"t-{uuid.uuid4().hex[:8]}"
    db.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    db.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    assert db.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "1"}


def race(attempt: Any) -> tuple[int, list[str]]:
    """Run ``attempt()`` on RACERS threads released together; (successes, failure codes)."""
    barrier = threading.Barrier(RACERS)
    wins: list[int] = []
    losses: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            attempt()
        except ClientError as error:
            with lock:
                losses.append(error.response["Error"]["Code"])
        else:
            with lock:
                wins.append(1)

    threads = [threading.Thread(target=run) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return len(wins), losses


@pytest.mark.parametrize("round_", range(4))
def test_moto_conditional_writes_are_atomic_under_racing_threads(moto: MotoServer, round_: int) -> None:
    """32 racing ``attribute_not_exists`` writes of one key: exactly one wins, as in DynamoDB."""
    db = client("dynamodb", moto.endpoint)
    table = keyed_table(db, "race")
    key = f"IDEM#{round_}"

    def put() -> None:
        db.put_item(
            TableName=table,
            Item={"pk": {"S": key}, "sk": {"S": "IDEM"}, "owner": {"S": uuid.uuid4().hex}},
            ConditionExpression="attribute_not_exists(pk)",
        )

    wins, losses = race(put)
    assert wins == 1, f"{wins} conditional puts succeeded"
    assert losses == ["ConditionalCheckFailedException"] * (RACERS - 1)

    def transact() -> None:
        task = uuid.uuid4().hex
        db.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"pk": {"S": f"TX#{key}"}, "sk": {"S": "IDEM"}, "task": {"S": task}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {"Put": {"TableName": table, "Item": {"pk": {"S": f"TASK#{task}"}, "sk": {"S": "TASK"}}}},
            ]
        )

    wins, losses = race(transact)
    assert wins == 1, f"{wins} conditional transactions succeeded"
    assert set(losses) == {"TransactionCanceledException"}
    tasks = db.scan(
        TableName=table, FilterExpression="sk = :t", ExpressionAttributeValues={":t": {"S": "TASK"}}
    )
    assert tasks["Count"] == 1  # the losers' second writes were not applied either


def test_toxiproxy_serves_its_api_and_proxies(tmp_path: Path, moto: MotoServer) -> None:
    from fault_injection import Toxiproxy

    with ToxiproxyServer(log_dir=tmp_path) as toxiproxy:
        api = Toxiproxy(toxiproxy.endpoint)
        assert api.version()
        listen = f"127.0.0.1:{free_port()}"
        api.create_proxy("dynamodb", listen, f"127.0.0.1:{moto.port}")
        assert "TableNames" in client("dynamodb", f"http://{listen}").list_tables()
        pid = toxiproxy.pid
    record = read_process(pid or 0)
    assert record is None or not still_running(record)


def test_missing_java_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java, no mvn
    with pytest.raises(MissingToolError) as caught:
        ElasticMQ(log_dir=tmp_path).start()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("java: java not found on PATH")
    assert "apt-get install openjdk-17-jre-headless" in message


def test_missing_maven_on_first_run_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = shutil.which("java")
    assert java is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(MissingToolError) as caught:
        ElasticMQ(log_dir=tmp_path, cache=tmp_path / "empty-cache").start()
    assert "mvn not found on PATH" in str(caught.value)
    assert "apt-get install maven" in str(caught.value)


@pytest.fixture
def private_cache(tmp_path: Path) -> Path:
    """A cache folder with the resolved classpath (copied from the shared cache) and nothing else."""
    shared = ensure_elasticmq(cache_dir())
    folder = tmp_path / "cache" / f"elasticmq-{ELASTICMQ_VERSION}"
    folder.mkdir(parents=True)
    shutil.copy(shared, folder / "classpath.txt")
    return tmp_path / "cache"


def test_elasticmq_class_data_archive_is_written_used_and_dropped_when_damaged(
    tmp_path: Path, private_cache: Path
) -> None:
    first = ElasticMQ(log_dir=tmp_path / "one", cache=private_cache)
    with first:
        assert first.process is not None
        assert any(arg.startswith("-XX:ArchiveClassesAtExit=") for arg in first.process.argv)
    archive = first.archive_path
    assert archive is not None and archive.is_file()  # published when the JVM exited
    assert not list(archive.parent.glob("*.tmp"))
    with ElasticMQ(log_dir=tmp_path / "two", cache=private_cache) as second:
        assert second.process is not None
        assert f"-XX:SharedArchiveFile={archive}" in second.process.argv
    # A truncated archive crashes the JVM (SIGBUS): the start drops it and runs without one.
    archive.write_bytes(archive.read_bytes()[: 64 * 1024])
    with ElasticMQ(log_dir=tmp_path / "three", cache=private_cache) as third:
        sqs = client("sqs", third.endpoint)
        assert sqs.create_queue(QueueName="after-damage")["QueueUrl"].endswith("/after-damage")
    assert not archive.exists()


def test_moto_key_queries_read_one_partition_with_dynamodb_semantics(moto: MotoServer) -> None:
    """The partition-only Query speed-up returns what DynamoDB would: order, ranges, pages, misses."""
    db = client("dynamodb", moto.endpoint)
    table = keyed_table(db, "q")
    for task in ("a", "b", "c"):
        db.put_item(TableName=table, Item={"pk": {"S": f"TASK#{task}"}, "sk": {"S": "TASK"}})
        for seq in (3, 1, 2):
            db.put_item(TableName=table, Item={"pk": {"S": f"TASK#{task}"}, "sk": {"S": f"EVENT#{seq:020d}"}})

    def sort_keys(**query: Any) -> list[str]:
        answer = db.query(
            TableName=table,
            ExpressionAttributeValues={":p": {"S": "TASK#b"}, ":e": {"S": "EVENT#"}},
            KeyConditionExpression="pk = :p AND begins_with(sk, :e)",
            **query,
        )
        return [item["sk"]["S"][-1] for item in answer["Items"]]

    assert sort_keys() == ["1", "2", "3"]
    assert sort_keys(ScanIndexForward=False) == [
        "3",
        "2",
        "1",
    ]
    everything = db.query(
        TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "TASK#b"}}
    )
    assert [item["sk"]["S"] for item in everything["Items"]][-1] == "TASK" and everything["Count"] == 4
    first = db.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "TASK#c"}},
        Limit=2,
    )
    rest = db.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "TASK#c"}},
        ExclusiveStartKey=first["LastEvaluatedKey"],
    )
    assert len(first["Items"]) + len(rest["Items"]) == 4
    missing = db.query(
        TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "TASK#zz"}}
    )
    assert missing["Items"] == []
    assert db.scan(TableName=table)["Count"] == 12  # the miss created nothing


def fake_maven(bin_dir: Path, body: str) -> None:
    """An ``mvn`` stand-in on PATH (unit test of the first-run step; the real one runs in CI)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "mvn"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(0o755)


def test_first_run_progress_counts_maven_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = tmp_path / "fake.jar"
    jar.write_bytes(b"PK")
    fake_maven(
        tmp_path / "bin",
        f"""
out = next(a for a in sys.argv if a.startswith("-Dmdep.outputFile=")).split("=", 1)[1]
for n in range(5):
    print(f"[INFO] Downloaded from central: https://repo.example/a{{n}}.jar (1 kB at 1 MB/s)")
open(out, "w").write({str(jar)!r})
""",
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    progress = io.StringIO()
    classpath = ensure_elasticmq(tmp_path / "cache", progress=progress)
    assert classpath.read_text() == str(jar)
    lines = progress.getvalue().splitlines()
    assert lines[0] == f"downloading ElasticMQ {ELASTICMQ_VERSION} with Maven (first run only)..."
    assert "(5 files downloaded" in lines[-1]
    quiet = io.StringIO()
    assert ensure_elasticmq(tmp_path / "cache", progress=quiet) == classpath  # cached: no Maven, no output
    assert quiet.getvalue() == ""


def test_maven_failure_names_the_artifact_and_shows_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_maven(
        tmp_path / "bin", 'print("[ERROR] Could not transfer artifact: network is unreachable")\nsys.exit(1)'
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BackendStartError) as caught:
        ensure_elasticmq(tmp_path / "cache", progress=None)
    assert caught.value.summary.startswith(
        f"ElasticMQ: Maven could not resolve {ELASTICMQ_ARTIFACT} (exit 1)"
    )
    assert "maven.log" in caught.value.summary
    assert "network is unreachable" in str(caught.value)
