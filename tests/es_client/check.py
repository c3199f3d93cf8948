"""Drives a running Lookout with the official Elasticsearch Python client 8.x, unmodified.

Usage: python3 check.py http://127.0.0.1:PORT
Exits non-zero with a message on the first mismatch.
"""
import sys
from datetime import datetime, timedelta, timezone

from elasticsearch import Elasticsearch, helpers

url = sys.argv[1]
es = Elasticsearch(url, request_timeout=30)

info = es.info()
assert info["version"]["number"].startswith("8."), info
assert es.ping()

now = datetime.now(timezone.utc)
actions = [
    {
        "_index": "client-logs",
        "_source": {
            "@timestamp": (now - timedelta(seconds=seq)).isoformat(),
            "service": "checkout" if seq % 2 == 0 else "cart",
            "status": 500 if seq % 5 == 0 else 200,
            "latency_ms": seq * 1.5,
            "message": f"request {seq} done",
        },
    }
    for seq in range(1000)
]
ok, errors = helpers.bulk(es, actions, chunk_size=200)
assert ok == 1000 and not errors, (ok, errors)
es.indices.refresh(index="client-logs")

assert es.count(index="client-logs")["count"] == 1000
assert es.count(index="client-logs", query={"term": {"status": 500}})["count"] == 200
assert es.count(index="client-logs", q="service:checkout AND status:500")["count"] == 100

result = es.search(
    index="client-logs",
    query={"bool": {"filter": [{"range": {"@timestamp": {"gte": "now-1h"}}}, {"term": {"service.keyword": "cart"}}]}},
    sort=[{"@timestamp": {"order": "desc"}}],
    size=5,
    aggs={"by_status": {"terms": {"field": "status"}}, "latency": {"stats": {"field": "latency_ms"}}},
)
assert result["hits"]["total"]["value"] == 500, result["hits"]["total"]
hits = result["hits"]["hits"]
assert [hit["_source"]["message"] for hit in hits] == [f"request {seq} done" for seq in (1, 3, 5, 7, 9)], hits
buckets = {bucket["key"]: bucket["doc_count"] for bucket in result["aggregations"]["by_status"]["buckets"]}
assert buckets == {200: 400, 500: 100}, buckets
assert result["aggregations"]["latency"]["count"] == 500

seen = set()
for hit in helpers.scan(es, index="client-logs", query={"query": {"match_all": {}}}, size=300, scroll="1m"):
    seen.add(hit["_id"])
assert len(seen) == 1000, len(seen)

doc_id = hits[0]["_id"]
doc = es.get(index="client-logs", id=doc_id)
assert doc["found"] and doc["_source"]["message"] == "request 1 done", doc

es.index(index="client-logs", id="fixed", document={"message": "by id"}, refresh=True)
assert es.get(index="client-logs", id="fixed")["_source"]["message"] == "by id"
assert es.indices.exists(index="client-logs")
es.indices.delete(index="client-logs")
assert not es.indices.exists(index="client-logs")
print("elasticsearch python client: all checks passed")
