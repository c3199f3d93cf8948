"""Scoped keys through the official Elasticsearch Python client 8.x: `api_key=(id, key)`
sends `Authorization: ApiKey base64(id:key)`, with the id naming the Lookout key.

Usage: python3 api_key.py http://127.0.0.1:PORT INGEST_TOKEN READ_TOKEN
Exits non-zero with a message on the first mismatch.
"""
import sys
from datetime import datetime, timezone

from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch, helpers

url, ingest_token, read_token = sys.argv[1:4]
shipper = Elasticsearch(url, api_key=("shipper", ingest_token), request_timeout=30)
reader = Elasticsearch(url, api_key=("reader", read_token), request_timeout=30)

assert shipper.info()["version"]["number"].startswith("8.")
now = datetime.now(timezone.utc).isoformat()
ok, errors = helpers.bulk(
    shipper, [{"_index": "keyed", "_source": {"@timestamp": now, "seq": seq}} for seq in range(50)]
)
assert ok == 50 and not errors, (ok, errors)
shipper.indices.refresh(index="keyed")

try:
    shipper.search(index="keyed", query={"match_all": {}})
    raise SystemExit("an ingest key searched")
except AuthorizationException as error:
    assert error.meta.status == 403, error
    assert error.body["error"]["type"] == "security_exception", error.body

assert reader.count(index="keyed")["count"] == 50

try:
    Elasticsearch(url, api_key=("shipper", read_token)).count(index="keyed")
    raise SystemExit("an api key whose id names another key was accepted")
except AuthenticationException as error:
    assert error.meta.status == 401, error

print("all api key checks passed")
