"""bench/serve load client: CLIENTS processes, one keep-alive HTTP/1.1 connection each, send one kind of request for
SECONDS and record each request's latency; prints one JSON line: requests/s, p50/p99 in ms, errors, bytes/request.

    load.py SCENARIO.json CLIENTS SECONDS

SCENARIO.json: {"port": P, "method": "GET"|"POST", "paths": [...], "body": "..." or null, "bodies": [...] or null,
"headers": {...}}. Requests cycle through `paths` (and `bodies`), each client starting at another offset.
"""
import http.client
import json
import multiprocessing
import sys
import time


def client(scenario, index, seconds, queue):
    connection = http.client.HTTPConnection("127.0.0.1", scenario["port"])
    paths, bodies = scenario["paths"], scenario.get("bodies")
    latencies, errors, size, i = [], 0, 0, index * 7919
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        path = paths[i % len(paths)]
        body = bodies[i % len(bodies)] if bodies else scenario.get("body")
        i += 1
        start = time.perf_counter()
        try:
            connection.request(scenario["method"], path, body=body, headers=scenario["headers"])
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                errors += 1
            else:
                latencies.append(time.perf_counter() - start)
                size += len(data)
        except (http.client.HTTPException, OSError):
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", scenario["port"])
    queue.put((latencies, errors, size))


def main():
    scenario = json.load(open(sys.argv[1]))
    clients, seconds = int(sys.argv[2]), float(sys.argv[3])
    queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=client, args=(scenario, i, seconds, queue)) for i in range(clients)]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = sorted(l for r in results for l in r[0])
    errors = sum(r[1] for r in results)
    size = sum(r[2] for r in results)
    n = len(latencies)
    pick = lambda q: round(latencies[min(n - 1, int(q * n))] * 1000, 2) if n else None
    print(json.dumps({"requests_per_second": round(n / seconds, 1), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
                      "ok": n, "errors": errors, "bytes_per_request": size // n if n else 0}))


if __name__ == "__main__":
    main()
