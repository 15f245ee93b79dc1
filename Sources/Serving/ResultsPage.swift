// ResultsPage: the clinicians' results page, plain HTML, CSS and JavaScript with no build step and no external
// asset. The page itself holds no data and needs no token; it asks for a clinician's token, keeps it in the
// tab's sessionStorage and sends it as a bearer token to `/diagnoses` (audited) and to each diagnosis's preview.
import Hummingbird
import HummingbirdCore

struct ResultsPageRoutes: ServerRoutes {
    func register(on router: Router<ServerContext>, services: ArchiveServices) {
        router.get("/") { _, _ in Response.redirect(to: "/results", type: .found) }
        router.get("/results") { _, _ in Self.asset(ResultsPage.html, type: "text/html; charset=utf-8") }
        router.get("/results/app.js") { _, _ in Self.asset(ResultsPage.script, type: "text/javascript; charset=utf-8") }
        router.get("/results/style.css") { _, _ in Self.asset(ResultsPage.style, type: "text/css; charset=utf-8") }
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [
            .contentType: type, .cacheControl: "no-cache",
            .contentSecurityPolicy: "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
            .init("X-Content-Type-Options")!: "nosniff", .init("Referrer-Policy")!: "no-referrer",
        ], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

enum ResultsPage {
    static let html = #"""
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Diagnoses — dicom-etl</title>
        <link rel="stylesheet" href="/results/style.css">
        <script src="/results/app.js" defer></script>
        </head>
        <body>
        <header>
          <h1>Diagnoses</h1>
          <form id="signin-form" autocomplete="off">
            <label>Clinician token <input id="token" type="password" size="40" required></label>
            <button id="signin" type="submit">Sign in</button>
            <button id="signout" type="button" hidden>Sign out</button>
          </form>
        </header>
        <p id="status" role="status">Sign in with a clinician token to see the diagnoses.</p>
        <main id="main" hidden>
          <form id="filters">
            <label>Patient ID <input id="filter-patient" type="text" size="14"></label>
            <label>Label <input id="filter-label" type="text" size="10" list="labels"></label>
            <datalist id="labels"></datalist>
            <label>Model <input id="filter-model" type="text" size="14"></label>
            <label>From <input id="filter-since" type="date"></label>
            <label>To <input id="filter-until" type="date"></label>
            <button id="apply" type="submit">Apply</button>
            <button id="clear" type="button">Clear</button>
          </form>
          <div id="layout">
            <table id="diagnoses">
              <thead><tr><th>Patient</th><th>Name</th><th>Study date (shifted)</th><th>Accession</th><th>Label</th>
                <th>Probability</th><th>Model</th><th>Written</th></tr></thead>
              <tbody></tbody>
            </table>
            <figure id="preview" hidden>
              <img id="preview-image" alt="Preview of the selected diagnosis's image">
              <figcaption id="preview-caption"></figcaption>
            </figure>
          </div>
          <p id="count"></p>
        </main>
        </body>
        </html>
        """#

    static let style = #"""
        body { font: 15px/1.4 system-ui, "DejaVu Sans", sans-serif; margin: 0 1.5rem 2rem; color: #1d2329; background: #f7f8fa; }
        header { display: flex; align-items: center; justify-content: space-between; flex-wrap: wrap; gap: 1rem; }
        h1 { font-size: 1.4rem; margin: 1rem 0; }
        form { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: end; }
        label { display: flex; flex-direction: column; font-size: .8rem; color: #4a5560; }
        input { font: inherit; padding: .25rem .4rem; border: 1px solid #b8c0c8; border-radius: 4px; }
        button { font: inherit; padding: .3rem .9rem; border: 1px solid #2b6cb0; background: #2b6cb0; color: #fff; border-radius: 4px; cursor: pointer; }
        button[type=button] { background: #fff; color: #2b6cb0; }
        #status { padding: .5rem .8rem; background: #eef3f8; border-left: 4px solid #2b6cb0; }
        #status.error { background: #fdeeee; border-color: #c53030; color: #822727; }
        #filters { margin: 1rem 0; }
        #layout { display: flex; gap: 1.5rem; align-items: flex-start; flex-wrap: wrap; }
        table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
        th, td { padding: .35rem .7rem; border-bottom: 1px solid #e2e6ea; text-align: left; white-space: nowrap; }
        th { font-size: .8rem; color: #4a5560; background: #eef1f4; }
        tbody tr { cursor: pointer; }
        tbody tr:hover { background: #f1f6fb; }
        tbody tr.selected { background: #dbeafe; }
        td.label { font-weight: 600; }
        td.number { text-align: right; font-variant-numeric: tabular-nums; }
        figure { margin: 0; background: #fff; padding: .8rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
        figure img { display: block; width: 256px; height: 256px; image-rendering: pixelated; object-fit: contain; background: #000; }
        figcaption { font-size: .8rem; color: #4a5560; margin-top: .4rem; max-width: 256px; }
        """#

    static let script = #"""
        "use strict";
        (function () {
          const key = "dicom-etl-token";
          const $ = (id) => document.getElementById(id);
          let previewURL = null;

          function setStatus(text, isError) {
            $("status").textContent = text;
            $("status").className = isError ? "error" : "";
          }

          function token() { return sessionStorage.getItem(key); }

          async function get(path, asBlob) {
            const response = await fetch(path, { headers: { "Authorization": "Bearer " + token(), "Accept": asBlob ? "image/png" : "application/json" } });
            if (!response.ok) {
              let code = "http_" + response.status;
              try { code = (await response.json()).error.code; } catch (e) { /* not JSON */ }
              const error = new Error(code);
              error.status = response.status;
              error.code = code;
              throw error;
            }
            return asBlob ? response.blob() : response.json();
          }

          function query() {
            const params = new URLSearchParams();
            const add = (name, id) => { const v = $(id).value.trim(); if (v) params.set(name, v); };
            add("patient", "filter-patient");
            add("label", "filter-label");
            add("model", "filter-model");
            add("since", "filter-since");
            add("until", "filter-until");
            params.set("limit", "200");
            return params.toString();
          }

          function cell(row, text, className) {
            const td = document.createElement("td");
            td.textContent = text == null ? "" : text;
            if (className) td.className = className;
            row.appendChild(td);
          }

          function formatDate(da) {
            return da && da.length === 8 ? da.slice(0, 4) + "-" + da.slice(4, 6) + "-" + da.slice(6) : "";
          }

          function render(diagnoses) {
            const body = document.querySelector("#diagnoses tbody");
            body.replaceChildren();
            const labels = new Set();
            for (const d of diagnoses) {
              labels.add(d.label);
              const tr = document.createElement("tr");
              tr.dataset.id = d.id;
              const p = d.probabilities[d.label];
              cell(tr, d.patient.id);
              cell(tr, d.patient.name ? d.patient.name.replace(/\^/g, " ").trim() : "");
              cell(tr, formatDate(d.study.date_shifted));
              cell(tr, d.study.accession_number);
              cell(tr, d.label, "label");
              cell(tr, p == null ? "" : p.toFixed(3), "number");
              cell(tr, d.model.name + " " + d.model.version);
              cell(tr, new Date(d.created_at).toLocaleString());
              tr.addEventListener("click", () => select(tr, d));
              body.appendChild(tr);
            }
            const list = $("labels");
            list.replaceChildren();
            for (const label of labels) { const o = document.createElement("option"); o.value = label; list.appendChild(o); }
            $("count").textContent = diagnoses.length + (diagnoses.length === 1 ? " diagnosis" : " diagnoses");
            if (diagnoses.length > 0) select(body.firstElementChild, diagnoses[0]); else $("preview").hidden = true;
          }

          async function select(tr, d) {
            for (const other of document.querySelectorAll("#diagnoses tbody tr.selected")) other.classList.remove("selected");
            tr.classList.add("selected");
            const figure = $("preview");
            figure.hidden = false;
            figure.dataset.loaded = "false";
            $("preview-caption").textContent = (d.patient.id || "") + " · " + d.label + " · " + (d.series.modality || "") + " " + (d.series.body_part || "");
            try {
              const blob = await get(d.preview, true);
              if (previewURL) URL.revokeObjectURL(previewURL);
              previewURL = URL.createObjectURL(blob);
              const image = $("preview-image");
              image.onload = () => { figure.dataset.loaded = "true"; figure.dataset.id = String(d.id); };
              image.src = previewURL;
            } catch (e) {
              $("preview-caption").textContent = "No preview (" + e.code + ")";
            }
          }

          async function load() {
            document.body.dataset.state = "loading";
            try {
              const page = await get("/diagnoses?" + query(), false);
              $("main").hidden = false;
              $("signout").hidden = false;
              setStatus("Signed in. Model results are preliminary: a radiologist's reading decides.", false);
              render(page.diagnoses);
              document.body.dataset.state = "loaded";
            } catch (e) {
              $("main").hidden = true;
              if (e.status === 401) setStatus("This token is not recognised.", true);
              else if (e.status === 403) setStatus("This token's role may not read results: a clinician token is required.", true);
              else setStatus("The results could not be loaded (" + e.code + ").", true);
              document.body.dataset.state = "error:" + e.code;
            }
          }

          document.addEventListener("DOMContentLoaded", () => {
            $("signin-form").addEventListener("submit", (event) => {
              event.preventDefault();
              sessionStorage.setItem(key, $("token").value.trim());
              $("token").value = "";
              load();
            });
            $("signout").addEventListener("click", () => {
              sessionStorage.removeItem(key);
              $("main").hidden = true;
              $("signout").hidden = true;
              setStatus("Signed out.", false);
              document.body.dataset.state = "signed-out";
            });
            $("filters").addEventListener("submit", (event) => { event.preventDefault(); load(); });
            $("clear").addEventListener("click", () => { $("filters").reset(); load(); });
            if (token()) load(); else document.body.dataset.state = "signed-out";
          });
        })();
        """#
}
