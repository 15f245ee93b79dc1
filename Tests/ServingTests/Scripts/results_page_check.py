#!/usr/bin/env python3
"""Drives the clinicians' results page in headless Chromium (Debian's `chromium`) over the DevTools protocol.

    results_page_check.py --url http://127.0.0.1:PORT --clinician-token-file F --analyst-token-file F \
        --expected expected.json --out DIR

`expected.json`: {"total": N, "patient": {"id": P, "count": n}, "label": {"value": L, "count": m}} from the
database. The script loads /results, signs in with the analyst token (refused: the page says a clinician token is
required, no row is shown), then with the clinician token (every diagnosis listed, the first one's preview image
loaded), filters by patient and by label (the row counts the database gives), and writes DIR/results-page.png.
It prints one JSON report and exits 1 on a failure.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


class Page:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script error: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait(self, expression, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for: {expression}")

    def sign_in(self, token):
        self.eval(f"document.getElementById('token').value = {json.dumps(token)}; "
                  "document.getElementById('signin').click(); document.body.dataset.state")
        return self.wait("(document.body.dataset.state || '').match(/^(loaded|error:)/) && document.body.dataset.state")

    def filter(self, field, value):
        self.eval("document.getElementById('filters').reset(); "
                  f"document.getElementById({json.dumps(field)}).value = {json.dumps(value)}; "
                  "document.body.dataset.state = 'filtering'; document.getElementById('apply').click(); true")
        self.wait("document.body.dataset.state === 'loaded'")
        return self.eval("document.querySelectorAll('#diagnoses tbody tr').length")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--clinician-token-file", required=True)
    parser.add_argument("--analyst-token-file", required=True)
    parser.add_argument("--expected", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    expected = json.load(open(args.expected))
    clinician = open(args.clinician_token_file).read().strip()
    analyst = open(args.analyst_token_file).read().strip()
    os.makedirs(args.out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    browser = subprocess.Popen(
        [args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1280,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failures = []
    report = {}
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not os.path.exists(port_file) and time.time() < deadline:
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Page.navigate", url=args.url + "/results")
        page.wait("document.readyState === 'complete' && document.body.dataset.state === 'signed-out'")

        state = page.sign_in(analyst)
        report["analyst_state"] = state
        status = page.eval("document.getElementById('status').textContent")
        rows = page.eval("document.querySelectorAll('#diagnoses tbody tr').length")
        if state != "error:role_not_allowed" or "clinician token is required" not in status or rows != 0:
            failures.append(f"the analyst token was not refused (state {state}, rows {rows})")

        state = page.sign_in(clinician)
        report["clinician_state"] = state
        if state != "loaded":
            failures.append(f"the clinician token did not load the results (state {state})")
        else:
            rows = page.eval("document.querySelectorAll('#diagnoses tbody tr').length")
            report["rows"] = rows
            if rows != min(expected["total"], 200):
                failures.append(f"{rows} rows listed, the database holds {expected['total']}")
            page.wait("document.getElementById('preview').dataset.loaded === 'true'")
            width = page.eval("document.getElementById('preview-image').naturalWidth")
            report["preview_width"] = width
            if not width:
                failures.append("the preview image did not load")
            shown = page.eval("Array.from(document.querySelectorAll('#diagnoses tbody tr td:first-child')).map(td => td.textContent)")
            if expected["patient"]["id"] not in shown:
                failures.append("the expected patient is not listed")

            count = page.filter("filter-patient", expected["patient"]["id"])
            report["patient_filter_rows"] = count
            patients = set(page.eval("Array.from(document.querySelectorAll('#diagnoses tbody tr td:first-child')).map(td => td.textContent)"))
            if count != expected["patient"]["count"] or patients != {expected["patient"]["id"]}:
                failures.append(f"filtering by patient listed {count} rows, expected {expected['patient']['count']}")
            count = page.filter("filter-label", expected["label"]["value"])
            report["label_filter_rows"] = count
            if count != expected["label"]["count"]:
                failures.append(f"filtering by label listed {count} rows, expected {expected['label']['count']}")
            page.eval("document.getElementById('filters').reset(); document.body.dataset.state = 'filtering'; "
                      "document.getElementById('apply').click(); true")
            page.wait("document.body.dataset.state === 'loaded'")
            page.wait("document.getElementById('preview').dataset.loaded === 'true'")
        shot = page.call("Page.captureScreenshot", format="png")
        path = os.path.join(args.out, "results-page.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        report["screenshot"] = path
    except Exception as error:  # noqa: BLE001 - any failure of the browser run is a test failure
        failures.append(f"{type(error).__name__}: {error}")
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)
    report["failures"] = failures
    print(json.dumps(report, sort_keys=True))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
