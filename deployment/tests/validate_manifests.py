#!/usr/bin/env python3
"""Validates the deployment manifests against published schemas and against the code they configure.

- Kubernetes: every resource of deployment/kubernetes (the kustomization's resources, its generated
  ConfigMaps and secret.example.yaml) against the strict OpenAPI-derived JSON schemas bundled with
  kubernetes-validate; with kubectl on PATH, also the `kubectl kustomize` output as applied.
- Compose: deployment/docker-compose.yaml against the Compose Specification schema vendored in
  check-jsonschema.
- Both: the DICOM_ETL_* variables, flags, ports and probe paths they use exist in the code, and the
  Grafana dashboard queries only metric names that Sources/Ingest/IngestMetrics.swift and the worker
  (Sources/Inference/Worker.swift) register.
- Transport and secrets: config/production.yaml, the Kubernetes manifests and the compose file connect to
  PostgreSQL with sslmode=verify-full and to S3 over https, mount the CA files their URLs name, and give
  every secret as a file (a Secret volume of mode 0440 with fsGroup; compose secrets), never as a variable
  or a flag.
- Deliberately broken copies of each are rejected, so the checks themselves can fail.

Run by scripts/test.sh with the test venv's Python; exits non-zero on any failure.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import unittest
from importlib import resources
from urllib.parse import parse_qs, urlparse

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOYMENT = os.path.join(ROOT, "deployment")
KUBERNETES = os.path.join(DEPLOYMENT, "kubernetes")
COMPOSE = os.path.join(DEPLOYMENT, "docker-compose.yaml")
DASHBOARD = os.path.join(DEPLOYMENT, "grafana", "dicom-etl.json")
KUBERNETES_VERSION = kubernetes_validate.latest_version()

# Variables read outside DaemonConfiguration's keys: the config file (DaemonOptions), the password file
# (DatabaseConfiguration.parse). The worker and migrate read DICOM_ETL_DATABASE_URL / DICOM_ETL_STORAGE_URL,
# which are also daemon keys.
EXTRA_VARIABLES = {"DICOM_ETL_CONFIG", "DICOM_ETL_DATABASE_PASSWORD_FILE"}
SECRET_KEYS = {"database_password", "storage_access_key_id", "storage_secret_access_key"}
AWS_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID_FILE",
                 "AWS_SECRET_ACCESS_KEY_FILE", "AWS_SESSION_TOKEN_FILE"}


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def configuration_keys():
    """The daemon's configuration keys: config/default.yaml's keys plus the environment-only secrets."""
    keys = set(yaml.safe_load(read(os.path.join(ROOT, "config", "default.yaml"))).keys())
    source = read(os.path.join(ROOT, "Sources", "Ingest", "DaemonConfiguration.swift"))
    declared = set(re.findall(r'ConfigurationKey\("([a-z_]+)"', source))
    if declared:
        keys |= declared
    return keys | SECRET_KEYS


def known_variables():
    return {"DICOM_ETL_" + key.upper() for key in configuration_keys()} | EXTRA_VARIABLES | AWS_VARIABLES | {
        "OPENBLAS_NUM_THREADS"}


def command_flags(swift_file):
    """Long flags declared by an ArgumentParser command (`customLong("x")` or `name: .long` properties)."""
    source = read(os.path.join(ROOT, "Sources", "dicom-etl", swift_file))
    flags = set(re.findall(r'customLong\("([a-z0-9-]+)"\)', source))
    for name in re.findall(r'name: \.long[^)]*\)\s*(?:var|let)\s+(\w+)', source):
        flags.add(re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), name))
    return flags


def metric_names():
    source = read(os.path.join(ROOT, "Sources", "Ingest", "IngestMetrics.swift")) + read(
        os.path.join(ROOT, "Sources", "Inference", "Worker.swift"))
    return set(re.findall(r'label: "(dicom_etl_[a-z_]+)"', source))


def kustomization():
    return yaml.safe_load(read(os.path.join(KUBERNETES, "kustomization.yaml")))


def generated_config_maps(kustomize):
    """The ConfigMaps kustomize's configMapGenerator makes (without the hash suffix)."""
    maps = []
    for generator in kustomize.get("configMapGenerator", []):
        data = {}
        for entry in generator.get("files", []):
            key, _, path = entry.partition("=") if "=" in entry else (os.path.basename(entry), "", entry)
            data[key] = read(os.path.normpath(os.path.join(KUBERNETES, path)))
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"], "namespace": kustomize.get("namespace", "default")},
                     "data": data})
    return maps


def kubernetes_documents():
    """(source, document) for every resource of the kustomization, its generated ConfigMaps and the example Secret."""
    kustomize = kustomization()
    documents = []
    for name in kustomize["resources"] + ["secret.example.yaml"]:
        for document in yaml.safe_load_all(read(os.path.join(KUBERNETES, name))):
            if document is not None:
                documents.append((name, document))
    documents += [("configMapGenerator", document) for document in generated_config_maps(kustomize)]
    return documents


def out_of_band_names(kind):
    """Names of the objects of this kind that secret.example.yaml shows and the site creates out of band."""
    return {document["metadata"]["name"] for document in yaml.safe_load_all(read(os.path.join(KUBERNETES, "secret.example.yaml")))
            if document and document["kind"] == kind}


def validate_kubernetes(document):
    """Raises unless the document is valid for KUBERNETES_VERSION under the strict schemas."""
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def compose_schema():
    path = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(path.read_text(encoding="utf-8"))


def validate_compose(document, schema):
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema, format_checker=validator_class.FORMAT_CHECKER).iter_errors(document),
                    key=lambda error: list(error.path))
    if errors:
        raise jsonschema.ValidationError("; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5]))


def containers(document):
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def compose_environment(service):
    """A compose service's environment as a dict, with `<<` merges already resolved by the YAML loader."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return environment


class KubernetesManifests(unittest.TestCase):
    def test_every_resource_is_valid_for_the_strict_schemas(self):
        documents = kubernetes_documents()
        kinds = sorted({document["kind"] for _, document in documents})
        self.assertEqual(kinds, ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace",
                                 "PersistentVolumeClaim", "Secret", "Service"])
        for source, document in documents:
            with self.subTest(source=source, kind=document["kind"]):
                validate_kubernetes(document)

    def test_kustomize_output_is_valid(self):
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            self.skipTest("kubectl (with kustomize) is not installed; the resources were validated one by one")
        rendered = subprocess.run(
            [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", KUBERNETES],
            check=True, capture_output=True, text=True, timeout=120).stdout
        documents = [document for document in yaml.safe_load_all(rendered) if document]
        self.assertGreaterEqual(len(documents), 8)
        for document in documents:
            with self.subTest(kind=document["kind"], name=document["metadata"]["name"]):
                validate_kubernetes(document)
                self.assertEqual(document["metadata"].get("namespace", "dicom-etl"), "dicom-etl")
        config = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("dicom-etl-config-")]
        self.assertEqual(len(config), 1)
        self.assertEqual(config[0]["data"]["dicom-etl.yaml"], read(os.path.join(ROOT, "config", "production.yaml")))
        # The Deployments reference the generated (hash-suffixed) names, or the ConfigMaps created out of band
        # as secret.example.yaml shows (the site CA).
        names = {d["metadata"]["name"] for d in documents if d["kind"] == "ConfigMap"} | out_of_band_names("ConfigMap")
        for deployment in (d for d in documents if d["kind"] == "Deployment"):
            volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
            for volume in volumes:
                if "configMap" in volume:
                    self.assertIn(volume["configMap"]["name"], names)

    def test_broken_copies_are_rejected(self):
        documents = [document for _, document in kubernetes_documents()]
        daemon = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "dicom-etl-daemon")
        wrong_type = copy.deepcopy(daemon)
        wrong_type["spec"]["replicas"] = "two"
        unknown_field = copy.deepcopy(daemon)
        unknown_field["spec"]["template"]["spec"]["terminationGracePeriod"] = 90
        bad_probe = copy.deepcopy(daemon)
        del bad_probe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"]
        hpa = copy.deepcopy(next(d for d in documents if d["kind"] == "HorizontalPodAutoscaler"))
        hpa["spec"]["minReplicas"] = "2"
        for name, broken in [("replicas as text", wrong_type), ("unknown field", unknown_field),
                             ("probe without port", bad_probe), ("HPA minReplicas as text", hpa)]:
            with self.subTest(name):
                with self.assertRaises(kubernetes_validate.ValidationError):
                    validate_kubernetes(broken)

    def test_manifests_match_the_code(self):
        variables = known_variables()
        worker_flags = command_flags("WorkerCommand.swift")
        run_flags = command_flags("RunCommand.swift")
        ops_port = str(yaml.safe_load(read(os.path.join(ROOT, "config", "default.yaml")))["ops_port"])
        documents = kubernetes_documents()
        environment = next(d for _, d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dicom-etl-env")
        for name in environment["data"]:
            self.assertIn(name, variables, f"{name} in the env ConfigMap is read by nothing")
        self.assertEqual(environment["data"]["DICOM_ETL_OPS_HOST"], "0.0.0.0")
        port = environment["data"]["DICOM_ETL_OPS_PORT"]
        for source, document in documents:
            for container in containers(document):
                for entry in container.get("env", []):
                    self.assertIn(entry["name"], variables, f"{entry['name']} ({source}) is read by nothing")
                command, *arguments = container["args"]
                self.assertIn(command, {"run", "worker", "migrate"})
                flags = {a[2:].split("=")[0] for a in arguments if a.startswith("--")}
                self.assertLessEqual(flags, run_flags | {"config"} if command == "run" else worker_flags, source)
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe in container:
                        self.assertIn(command, {"run", "worker"}, "the daemon and the worker serve HTTP; migrate does not")
                        self.assertIn(container[probe]["httpGet"]["path"], {"/healthz", "/readyz"})
                        self.assertEqual(container[probe]["httpGet"]["port"], "metrics")
                if command in ("run", "worker"):
                    self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/readyz")
                    self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/healthz")
                    # The daemon also exposes its Storage SCP, on the port the env ConfigMap gives it.
                    dicom = environment["data"].get("DICOM_ETL_DICOM_PORT") if command == "run" else None
                    self.assertEqual([str(p["containerPort"]) for p in container["ports"]], [port] + ([dicom] if dicom else []))
        self.assertEqual(port, ops_port)


class ComposeFile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.schema = compose_schema()
        cls.document = yaml.safe_load(read(COMPOSE))

    def test_valid_for_the_compose_specification(self):
        validate_compose(self.document, self.schema)
        self.assertEqual(set(self.document["services"]),
                         {"postgres", "minio", "create-bucket", "migrate", "daemon", "worker"})
        self.assertEqual(self.document["services"]["worker"]["deploy"]["replicas"], 2)

    def test_broken_copies_are_rejected(self):
        unknown_key = copy.deepcopy(self.document)
        unknown_key["services"]["daemon"]["restart_policy"] = "always"
        wrong_type = copy.deepcopy(self.document)
        wrong_type["services"]["worker"]["deploy"] = "replicas=2"
        bad_condition = copy.deepcopy(self.document)
        bad_condition["services"]["daemon"]["depends_on"]["migrate"]["condition"] = "service_finished"
        for name, broken in [("unknown service key", unknown_key), ("deploy as text", wrong_type),
                             ("unknown depends_on condition", bad_condition)]:
            with self.subTest(name):
                with self.assertRaises(jsonschema.ValidationError):
                    validate_compose(broken, self.schema)

    def test_services_match_the_code(self):
        variables = known_variables()
        declared_secrets = set(self.document["secrets"])
        for name, service in self.document["services"].items():
            for secret in service.get("secrets", []):
                self.assertIn(secret, declared_secrets, name)
            if service.get("image", "").startswith("dicom-etl"):
                for variable, value in compose_environment(service).items():
                    self.assertIn(variable, variables, f"{variable} ({name}) is read by nothing")
                    if variable.endswith("_FILE") or variable == "DICOM_ETL_KEY_FILE":
                        secret = os.path.basename(value)
                        self.assertIn(secret, service.get("secrets", []), f"{variable} of {name} names an unmounted secret")
                command = service["command"]
                self.assertIn(command[0], {"run", "worker", "migrate"})
                flags = {a[2:] for a in command[1:] if a.startswith("--")}
                self.assertLessEqual(flags, command_flags("WorkerCommand.swift") if command[0] == "worker" else set())
        daemon = compose_environment(self.document["services"]["daemon"])
        self.assertEqual(daemon["DICOM_ETL_OPS_HOST"], "0.0.0.0")
        self.assertIn(":" + daemon["DICOM_ETL_OPS_PORT"], self.document["services"]["daemon"]["ports"][0])


# Variables that would hold a secret's value: the manifests give secrets as files (*_FILE) instead.
SECRET_VALUE_VARIABLES = {"DICOM_ETL_DATABASE_PASSWORD", "DICOM_ETL_STORAGE_ACCESS_KEY_ID", "DICOM_ETL_STORAGE_SECRET_ACCESS_KEY",
                          "DICOM_ETL_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD"}
SECRET_FLAGS = {"--database-password", "--storage-access-key-id", "--storage-secret-access-key"}


def url_options(url):
    return {key: values[-1] for key, values in parse_qs(urlparse(url).query).items()}


def database_url_problems(url, where):
    """A production database URL verifies the server (verify-full) and holds no password."""
    problems = []
    parsed = urlparse(url)
    if parsed.password:
        problems.append(f"{where}: the database URL holds a password")
    if url_options(url).get("sslmode") != "verify-full":
        problems.append(f"{where}: the database URL is not sslmode=verify-full")
    return problems


def storage_url_problems(url, where):
    """A production storage URL speaks HTTPS (an explicit endpoint, or AWS's) and holds no secret."""
    options = url_options(url)
    problems = []
    if "endpoint" in options and not options["endpoint"].startswith("https://"):
        problems.append(f"{where}: the storage endpoint is not https://")
    if {"password", "secret", "secret_access_key", "secretaccesskey", "token", "session_token"} & {k.lower() for k in options}:
        problems.append(f"{where}: the storage URL holds a secret")
    return problems


def tls_files(url):
    return [value for key, value in url_options(url).items() if key in ("sslrootcert", "sslcert", "sslkey", "ca_bundle")]


def production_config_problems(text):
    config = yaml.safe_load(text)
    return (database_url_problems(config.get("database_url", ""), "config/production.yaml")
            + storage_url_problems(config.get("storage_url", ""), "config/production.yaml")
            + ([] if str(config.get("storage_url", "")).startswith("s3://") else ["config/production.yaml: storage_url is not S3"]))


def kubernetes_security_problems(documents):
    """TLS verified for both servers, every secret a file of a Secret volume only its pod's group can read."""
    problems = []
    environment = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dicom-etl-env")["data"]
    problems += database_url_problems(environment.get("DICOM_ETL_DATABASE_URL", ""), "dicom-etl-env")
    problems += storage_url_problems(environment.get("DICOM_ETL_STORAGE_URL", ""), "dicom-etl-env")
    for document in (d for d in documents if d["kind"] == "Deployment"):
        name = document["metadata"]["name"]
        spec = document["spec"]["template"]["spec"]
        context = spec.get("securityContext", {})
        secret_volumes = [v for v in spec.get("volumes", []) if "secret" in v]
        for volume in secret_volumes:
            mode = volume["secret"].get("defaultMode", 0o644)
            if mode & 0o137:
                problems.append(f"{name}: Secret volume {volume['name']} has mode {mode:04o} (0440 or stricter)")
        if secret_volumes and (not context.get("fsGroup") or not context.get("runAsUser") or not context.get("runAsNonRoot")):
            problems.append(f"{name}: Secret volumes need a non-root runAsUser and an fsGroup to be readable as 0440")
        for container in containers(document):
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            for entry in container.get("env", []):
                if entry["name"] in SECRET_VALUE_VARIABLES:
                    problems.append(f"{name}: {entry['name']} gives a secret as a variable; use its _FILE variable")
                if entry["name"].endswith("_FILE") and not any(entry.get("value", "").startswith(m + "/") for m in mounts):
                    problems.append(f"{name}: {entry['name']} names a file outside the container's mounts")
            if set(container.get("args", [])) & SECRET_FLAGS:
                problems.append(f"{name}: a secret is given as a flag")
            for url in (environment.get("DICOM_ETL_DATABASE_URL", ""), environment.get("DICOM_ETL_STORAGE_URL", "")):
                for path in tls_files(url):
                    if not any(path.startswith(m + "/") for m in mounts):
                        problems.append(f"{name}: {path} (named by a URL) is not mounted")
    return problems


def compose_security_problems(document):
    problems = []
    for name, service in document["services"].items():
        if not service.get("image", "").startswith("dicom-etl"):
            continue
        environment = compose_environment(service)
        mounted = {"/run/secrets/" + secret for secret in service.get("secrets", [])}
        if "DICOM_ETL_DATABASE_URL" in environment:
            problems += database_url_problems(environment["DICOM_ETL_DATABASE_URL"], name)
        if "DICOM_ETL_STORAGE_URL" in environment:
            problems += storage_url_problems(environment["DICOM_ETL_STORAGE_URL"], name)
        for variable in ("DICOM_ETL_DATABASE_URL", "DICOM_ETL_STORAGE_URL"):
            for path in tls_files(environment.get(variable, "")):
                if path not in mounted:
                    problems.append(f"{name}: {path} (named by {variable}) is not a mounted secret")
        for variable in environment:
            if variable in SECRET_VALUE_VARIABLES:
                problems.append(f"{name}: {variable} gives a secret as a variable; use its _FILE variable")
        if set(service.get("command", [])) & SECRET_FLAGS:
            problems.append(f"{name}: a secret is given as a flag")
    return problems


class TransportAndSecrets(unittest.TestCase):
    """Production templates verify TLS (verify-full, https) and give secrets as owner-only files."""

    def test_production_config_kubernetes_and_compose(self):
        self.assertEqual(production_config_problems(read(os.path.join(ROOT, "config", "production.yaml"))), [])
        self.assertEqual(kubernetes_security_problems([d for _, d in kubernetes_documents()]), [])
        self.assertEqual(compose_security_problems(yaml.safe_load(read(COMPOSE))), [])

    def test_broken_copies_are_caught(self):
        production = read(os.path.join(ROOT, "config", "production.yaml"))
        self.assertTrue(production_config_problems(production.replace("sslmode=verify-full", "sslmode=require")))
        self.assertTrue(production_config_problems(production.replace("endpoint=https://", "endpoint=http://")))

        documents = [d for _, d in kubernetes_documents()]

        def broken_kubernetes(change):
            copy_ = copy.deepcopy(documents)
            change(copy_)
            return kubernetes_security_problems(copy_)

        def env_map(docs):
            return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "dicom-etl-env")["data"]

        def daemon_spec(docs):
            return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "dicom-etl-daemon")["spec"]["template"]["spec"]

        def prefer(docs):
            env_map(docs)["DICOM_ETL_DATABASE_URL"] = env_map(docs)["DICOM_ETL_DATABASE_URL"].replace("verify-full", "prefer")

        def plain_http(docs):
            env_map(docs)["DICOM_ETL_STORAGE_URL"] = env_map(docs)["DICOM_ETL_STORAGE_URL"].replace("https://", "http://")

        def readable_secret(docs):
            next(v for v in daemon_spec(docs)["volumes"] if "secret" in v)["secret"]["defaultMode"] = 0o444

        def no_fs_group(docs):
            del daemon_spec(docs)["securityContext"]["fsGroup"]

        def secret_as_variable(docs):
            daemon_spec(docs)["containers"][0]["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"})

        def unmounted_ca(docs):
            for container in daemon_spec(docs)["containers"]:
                container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "tls-ca"]

        for change in (prefer, plain_http, readable_secret, no_fs_group, secret_as_variable, unmounted_ca):
            with self.subTest(change.__name__):
                self.assertTrue(broken_kubernetes(change), change.__name__)

        compose = yaml.safe_load(read(COMPOSE))
        for service, variable, old, new in [("daemon", "DICOM_ETL_DATABASE_URL", "verify-full", "disable"),
                                            ("worker", "DICOM_ETL_STORAGE_URL", "https://", "http://")]:
            broken = copy.deepcopy(compose)
            broken["services"][service]["environment"][variable] = broken["services"][service]["environment"][variable].replace(old, new)
            with self.subTest(f"compose {service} {new}"):
                self.assertTrue(compose_security_problems(broken))
        unmounted = copy.deepcopy(compose)
        unmounted["services"]["migrate"]["secrets"].remove("tls_ca")
        self.assertTrue(compose_security_problems(unmounted))


class GrafanaDashboard(unittest.TestCase):
    def test_queries_use_only_registered_metrics(self):
        dashboard = json.loads(read(DASHBOARD))
        registered = metric_names()
        self.assertGreaterEqual(len(registered), 10)
        expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
        self.assertGreaterEqual(len(expressions), 8)
        used = set()
        for expression in expressions:
            for name in re.findall(r"\b(dicom_etl_[a-z_]+)", expression):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                self.assertIn(base, registered, f"{name} is not a metric of the daemon")
                used.add(base)
        for needed in ("dicom_etl_files_ingested_total", "dicom_etl_files_quarantined_total", "dicom_etl_job_queue_depth",
                       "dicom_etl_stage_duration_seconds", "dicom_etl_file_latency_seconds"):
            self.assertIn(needed, used)

    def test_an_unknown_metric_is_caught(self):
        registered = metric_names()
        self.assertNotIn(re.sub(r"_(bucket|sum|count)$", "", "dicom_etl_files_ingested_totals"), registered)


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    failed = len(result.failures) + len(result.errors)
    print(f"manifests: {result.testsRun - failed} passed, {failed} failed")
    sys.exit(1 if failed or not result.wasSuccessful() else 0)
