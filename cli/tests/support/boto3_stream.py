# InvokeWithResponseStream through boto3 (the AWS SDK for Python; its core,
# botocore, parses the event stream and checks both CRCs of every
# message): prints what it saw as JSON. argv: endpoint, function, payload,
# [Tail].
import json
import sys

import boto3
from botocore.config import Config

endpoint, function, payload = sys.argv[1:4]
tail = len(sys.argv) > 4 and sys.argv[4] == "Tail"
client = boto3.client(
    "lambda",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="fnhost",
    aws_secret_access_key="fnhost",
    config=Config(retries={"max_attempts": 1}),
)
args = {"FunctionName": function, "Payload": payload.encode()}
if tail:
    args["LogType"] = "Tail"
r = client.invoke_with_response_stream(**args)
out = {"status": r["StatusCode"], "version": r.get("ExecutedVersion"), "events": []}
for event in r["EventStream"]:
    if "PayloadChunk" in event:
        out["events"].append(["chunk", event["PayloadChunk"]["Payload"].decode()])
    if "InvokeComplete" in event:
        done = dict(event["InvokeComplete"])
        out["events"].append(["complete", {k: v for k, v in done.items() if k != "LogResult"}, "LogResult" in done])
print(json.dumps(out))
