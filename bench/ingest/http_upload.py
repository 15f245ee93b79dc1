"""HTTP ingress for bench/ingest: CLIENTS processes (one keep-alive HTTP/1.1 connection each, files dealt
round-robin) send one file per request, either as STOW-RS (POST /studies, multipart/related;
type="application/dicom" with one part, bearer token) or as Orthanc's raw upload (POST /instances,
application/dicom). The clock starts when every client is connected and released at once; prints
FILES_OK FILES_FAILED START_EPOCH LAST_ACK_EPOCH (the wall clock of the last successful response).

    http_upload.py stow|orthanc LIST_FILE PORT CLIENTS [TOKEN_FILE]
"""
import http.client
import multiprocessing
import sys
import time
import uuid


def client(mode, files, port, token, barrier, results):
    connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.connect()
    boundary = "bench-" + uuid.uuid4().hex
    headers = {"Content-Type": "application/dicom"}
    path, good = "/instances", (200,)
    if mode == "stow":
        path, good = "/studies", (200,)
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json", "Authorization": f"Bearer {token}"}
    ok = failed = 0
    last = 0.0
    statuses = {}
    barrier.wait()
    for name in files:
        with open(name, "rb") as handle:
            body = handle.read()
        if mode == "stow":
            body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + body
                    + f"\r\n--{boundary}--\r\n".encode())
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if response.status in good:
                ok += 1
                last = time.time()
            else:
                failed += 1
        except (http.client.HTTPException, OSError):
            failed += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port)
    connection.close()
    results.put((ok, failed, last, statuses))


def main():
    mode, list_file, port, clients = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    token = open(sys.argv[5]).read().strip() if len(sys.argv) > 5 else ""
    files = [line for line in open(list_file).read().split("\n") if line]
    barrier = multiprocessing.Barrier(clients + 1)
    results = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=client, args=(mode, files[i::clients], port, token, barrier, results))
                 for i in range(clients)]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.time()
    answers = [results.get() for _ in processes]
    for process in processes:
        process.join()
    statuses = {}
    for answer in answers:
        for status, count in answer[3].items():
            statuses[status] = statuses.get(status, 0) + count
    print(" ".join(f"{s}:{n}" for s, n in sorted(statuses.items())), file=sys.stderr)
    print(f"{sum(a[0] for a in answers)} {sum(a[1] for a in answers)} {start:.6f} {max(a[2] for a in answers):.6f}")


if __name__ == "__main__":
    main()
