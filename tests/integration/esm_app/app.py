"""A tiny Lambda handler for the local event-source mapping tests.

Each record value is JSON: {"n": <int>, "fail": "error"|"item"|"poison"|null, "times": <int>}.
- "error": the whole invocation raises, the first `times` times this record is in a batch;
- "item": the record is reported in batchItemFailures, the first `times` times;
- "poison": the invocation always raises.
Records of a successful invocation (and, for partial failures, those before the lowest failed offset)
are appended to $RESULTS_FILE as JSON lines; every invocation to $RESULTS_FILE.invocations.
"""

import base64
import json
import os
import time

SEEN: dict[str, int] = {}


def lambda_handler(event, context):
    results = os.environ["RESULTS_FILE"]
    assert event["eventSource"] == "aws:kafka"
    assert context.get_remaining_time_in_millis() > 0
    batches = event["records"]  # "topic-partition" -> records; one payload may hold several partitions
    with open(results + ".invocations", "a") as out:
        out.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "keys": list(batches),
                    "size": sum(len(records) for records in batches.values()),
                    "first": next(iter(batches.values()))[0]["offset"],
                    "env_table": os.environ.get("ORDERS_TABLE"),
                }
            )
            + "\n"
        )
    time.sleep(float(os.environ.get("SLEEP_MS", "0")) / 1000)
    failures = []
    done = []
    for batch_key, records in batches.items():
        failed = None
        for record in records:
            body = json.loads(base64.b64decode(record["value"]))
            key = f"{batch_key}@{record['offset']}"
            if body.get("fail") == "poison":
                raise RuntimeError(f"poison record {key}")
            if body.get("fail") in ("error", "item") and SEEN.get(key, 0) < body.get("times", 1):
                SEEN[key] = SEEN.get(key, 0) + 1
                if body["fail"] == "error":
                    raise RuntimeError(f"transient failure at {key}")
                failed = record
                break
        if failed is not None:
            failures.append({"itemIdentifier": {"partition": batch_key, "offset": failed["offset"]}})
        done += [(batch_key, r) for r in records if failed is None or r["offset"] < failed["offset"]]
    with open(results, "a") as out:
        for batch_key, record in done:
            body = json.loads(base64.b64decode(record["value"]))
            headers = {k: bytes(v).decode() for h in record["headers"] for k, v in h.items()}
            out.write(
                json.dumps(
                    {
                        "key": batch_key,
                        "offset": record["offset"],
                        "n": body["n"],
                        "msg_key": base64.b64decode(record.get("key", "")).decode(),
                        "headers": headers,
                    }
                )
                + "\n"
            )
    return {"batchItemFailures": failures}
