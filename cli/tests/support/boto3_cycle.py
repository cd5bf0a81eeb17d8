# A deploy cycle through boto3 (the AWS SDK for Python), for what the AWS
# CLI cannot do from a program: every Lambda waiter botocore defines, run
# with the SDK's own waiter machinery, and InvokeWithResponseStream's event
# stream (both CRCs checked by botocore). Prints what it saw as JSON.
# argv: endpoint, admin token, first package (zip), second package (zip).
import json
import sys

import boto3
from botocore.config import Config

endpoint, token, first, second = sys.argv[1:5]
c = boto3.client(
    "lambda",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="boto3-key",
    aws_secret_access_key=token,
    config=Config(retries={"max_attempts": 1}),
)
# A waiter that does not see its state at once fails (one attempt).
once = {"Delay": 1, "MaxAttempts": 1}
out = {"waited": []}


def wait(name, **args):
    c.get_waiter(name).wait(WaiterConfig=once, **args)
    out["waited"].append(name)


created = c.create_function(
    FunctionName="b3",
    Role="arn:aws:iam::000000000000:role/b3",
    Handler="b3.handler",
    Runtime="provided.al2023",
    Code={"ZipFile": open(first, "rb").read()},
)
out["created"] = created["Version"]
wait("function_exists", FunctionName="b3")
wait("function_active", FunctionName="b3")
wait("function_active_v2", FunctionName="b3")
updated = c.update_function_code(FunctionName="b3", ZipFile=open(second, "rb").read())
out["updated"] = [updated["Version"], updated["LastUpdateStatus"]]
wait("function_updated", FunctionName="b3")
wait("function_updated_v2", FunctionName="b3")
version = c.publish_version(FunctionName="b3")["Version"]
out["published"] = version
wait("published_version_active", FunctionName="b3", Qualifier=version)
r = c.invoke_with_response_stream(
    FunctionName="b3", Qualifier=version, Payload=b'{"op":"echo","data":"streamed"}'
)
out["stream"] = [r["StatusCode"], r.get("ExecutedVersion")]
for event in r["EventStream"]:
    if "PayloadChunk" in event:
        out["stream"].append(event["PayloadChunk"]["Payload"].decode())
    if "InvokeComplete" in event:
        out["stream"].append("complete" if not event["InvokeComplete"].get("ErrorCode") else "error")
url = c.create_function_url_config(FunctionName="b3", AuthType="NONE")
out["url"] = url["FunctionUrl"].split(".", 1)[1]
out["urls"] = len(c.list_function_url_configs(FunctionName="b3")["FunctionUrlConfigs"])
c.delete_function(FunctionName="b3")
try:
    c.get_function(FunctionName="b3")
    out["deleted"] = False
except c.exceptions.ResourceNotFoundException:
    out["deleted"] = True
print(json.dumps(out))
