"""Orthanc's store-only ingest for bench/ingest: POST every file to /instances over keep-alive HTTP/1.1
connections from CLIENTS threads (one connection each), and print FILES_OK FILES_FAILED SECONDS.

    orthanc_upload.py LIST_FILE PORT CLIENTS
"""
import http.client
import sys
import threading
import time


def main():
    list_file, port, clients = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    files = [line for line in open(list_file).read().split("\n") if line]
    counts = [[0, 0] for _ in range(clients)]

    def client(index):
        connection = http.client.HTTPConnection("127.0.0.1", port)
        for path in files[index::clients]:
            with open(path, "rb") as handle:
                body = handle.read()
            try:
                connection.request("POST", "/instances", body=body, headers={"Content-Type": "application/dicom"})
                response = connection.getresponse()
                response.read()
                counts[index][0 if response.status == 200 else 1] += 1
            except (http.client.HTTPException, OSError):
                counts[index][1] += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    print(f"{sum(c[0] for c in counts)} {sum(c[1] for c in counts)} {seconds:.3f}")


if __name__ == "__main__":
    main()
