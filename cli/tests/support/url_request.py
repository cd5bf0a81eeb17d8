# One HTTP request to a function URL, optionally SigV4-signed by botocore
# (the AWS SDK core, as awscurl and the SDKs sign a call to an AWS_IAM
# function URL: service "lambda"). Prints {"status", "headers" (names
# lower-cased), "body"} as JSON.
#
# argv: JSON {"method", "connect" (host:port to connect to), "host" (the
# Host header), "path", "headers" (object), "body" (string), "sign"
# (optional [access key id, secret])}.
import http.client
import json
import sys

req = json.loads(sys.argv[1])
headers = {"Host": req["host"], **req.get("headers", {})}
body = req.get("body", "").encode()
if req.get("sign"):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key, secret = req["sign"]
    signed = AWSRequest(
        method=req["method"],
        url="http://" + req["host"] + req["path"],
        data=body,
        headers=headers,
    )
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(signed)
    headers = dict(signed.headers.items())
conn = http.client.HTTPConnection(req["connect"], timeout=30)
conn.request(req["method"], req["path"], body=body or None, headers=headers)
r = conn.getresponse()
out = {
    "status": r.status,
    "headers": {k.lower(): v for k, v in r.getheaders()},
    "body": r.read().decode("utf-8", "replace"),
}
print(json.dumps(out))
