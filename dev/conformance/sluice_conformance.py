"""Sluice's Kafka, Pub/Sub and GCS contracts, exercised with the clients its users have.

Python's confluent-kafka (SerializingProducer with the Schema Registry's AvroSerializer), and
Google's own google-cloud-pubsub and google-cloud-storage clients, against a running Sluice on the
local stack. Run by dev/test/conformance.test.ts; each subcommand prints one JSON object.

  subscribe --project P --topic T --subscription S
  produce   --bootstrap B --registry URL --topic T --partitions 1,2 --job J --tenant T
            --provider P --model M --rows N [--strategy topic|record] [--schema full|lean]
  check     --project P --subscription S --jobs J1,J2 [--timeout 120]

PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST point the Google clients at the emulators.
"""

import argparse
import hashlib
import json
import os
import sys
import time

SCHEMA = os.path.join(os.path.dirname(__file__), "..", "..", "schemas", "avro", "prompt-request.avsc")
# Optional fields a producer may leave out: Sluice's reader schema gives their defaults.
LEAN_DROPS = {"attempt", "customId", "priority"}


def subscribe(a):
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(a.project, a.topic)
    try:
        publisher.create_topic(request={"name": topic})
    except AlreadyExists:
        pass
    sub = subscriber.subscription_path(a.project, a.subscription)
    subscriber.create_subscription(request={"name": sub, "topic": topic, "ack_deadline_seconds": 60})
    return {"subscription": sub}


def produce(a):
    from confluent_kafka import SerializingProducer
    from confluent_kafka.schema_registry import (
        SchemaRegistryClient,
        record_subject_name_strategy,
        topic_subject_name_strategy,
    )
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import StringSerializer

    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    if a.schema == "lean":
        schema["fields"] = [x for x in schema["fields"] if x["name"] not in LEAN_DROPS]
    registry = SchemaRegistryClient({"url": a.registry})
    strategy = record_subject_name_strategy if a.strategy == "record" else topic_subject_name_strategy
    serializer = AvroSerializer(registry, json.dumps(schema), conf={"subject.name.strategy": strategy})
    producer = SerializingProducer(
        {
            "bootstrap.servers": a.bootstrap,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": serializer,
        }
    )
    partitions = [int(p) for p in a.partitions.split(",")]
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    for i in range(a.rows):
        record = {
            "jobId": a.job,
            "promptId": f"{a.job}:{i}",
            "rowIndex": i,
            "tenant": a.tenant,
            "provider": a.provider,
            "model": a.model,
            "messages": [{"role": "user", "content": f"Headline {i}: is it good news?"}],
            "parameters": {"maxTokens": 8},
            "submittedAt": int(time.time() * 1000),
            "source": "kafka",
        }
        if a.schema == "full":
            record.update({"attempt": 0, "customId": f"py-{i}", "priority": 0})
        producer.produce(a.topic, key=a.job, value=record, partition=partitions[i % len(partitions)], on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(30)
    subject = f"{a.topic}-value" if a.strategy == "topic" else "sluice.v1.PromptRequest"
    return {"produced": a.rows, "undelivered": left, "failures": failures[:5], "subject": subject}


def check(a):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import pubsub_v1, storage

    subscriber = pubsub_v1.SubscriberClient()
    sub = subscriber.subscription_path(a.project, a.subscription)
    wanted = set(a.jobs.split(","))
    seen = {}
    deadline = time.time() + a.timeout
    # Until every job is announced, and a few seconds more: a second announcement would come then.
    quiet_until = None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        try:
            pulled = subscriber.pull(request={"subscription": sub, "max_messages": 50}, timeout=5)
        except Exception:  # the emulator answers DeadlineExceeded when nothing is there
            pulled = None
        if pulled and pulled.received_messages:
            subscriber.acknowledge(
                request={"subscription": sub, "ack_ids": [m.ack_id for m in pulled.received_messages]}
            )
            for m in pulled.received_messages:
                job = m.message.attributes.get("jobId")
                seen.setdefault(job, []).append(
                    {"attributes": dict(m.message.attributes), "body": json.loads(m.message.data.decode("utf-8"))}
                )
        if quiet_until is None and wanted <= set(seen):
            quiet_until = time.time() + 3
    gcs = storage.Client(project="sluice-local", credentials=AnonymousCredentials())
    jobs = {}
    for job in sorted(wanted):
        announcements = seen.get(job, [])
        out = {"announcements": len(announcements)}
        if announcements:
            body = announcements[0]["body"]
            out["attributes"] = announcements[0]["attributes"]
            out["body"] = body
            bucket_name, _, path = body["manifestUri"][len("gs://") :].partition("/")
            bucket = gcs.bucket(bucket_name)
            manifest = json.loads(bucket.blob(path).download_as_bytes())
            out["manifest"] = {"status": manifest["status"], "counts": manifest["counts"]}
            files = []
            rows = []
            for kind in ("results", "errors"):
                for f in manifest["outputs"][kind]:
                    name = f["uri"][len("gs://") :].partition("/")[2]
                    data = bucket.blob(name).download_as_bytes()
                    lines = [json.loads(x) for x in data.decode("utf-8").splitlines() if x]
                    rows += [x["row_index"] for x in lines]
                    files.append(
                        {
                            "kind": kind,
                            "records": f["records"],
                            "lines": len(lines),
                            "sha256Matches": hashlib.sha256(data).hexdigest() == f["sha256"],
                            "bytesMatch": len(data) == f["bytes"],
                        }
                    )
            out["files"] = files
            out["rows"] = sorted(rows)
            out["customIds"] = sorted({x for x in (line_ids(bucket, manifest)) if x is not None})
        jobs[job] = out
    return {"jobs": jobs}


def line_ids(bucket, manifest):
    for f in manifest["outputs"]["results"]:
        name = f["uri"][len("gs://") :].partition("/")[2]
        for x in bucket.blob(name).download_as_bytes().decode("utf-8").splitlines():
            if x:
                yield json.loads(x).get("custom_id")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("subscribe")
    s.add_argument("--project", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--subscription", required=True)
    r = sub.add_parser("produce")
    for name in ("bootstrap", "registry", "topic", "partitions", "job", "tenant", "provider", "model"):
        r.add_argument(f"--{name}", required=True)
    r.add_argument("--rows", type=int, required=True)
    r.add_argument("--strategy", choices=["topic", "record"], default="topic")
    r.add_argument("--schema", choices=["full", "lean"], default="full")
    c = sub.add_parser("check")
    c.add_argument("--project", required=True)
    c.add_argument("--subscription", required=True)
    c.add_argument("--jobs", required=True)
    c.add_argument("--timeout", type=float, default=120)
    a = p.parse_args()
    out = {"subscribe": subscribe, "produce": produce, "check": check}[a.cmd](a)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
