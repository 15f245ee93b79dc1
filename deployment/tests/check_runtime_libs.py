#!/usr/bin/env python3
"""Checks that the container image's runtime stage installs every shared library the binary loads.

Usage: check_runtime_libs.py BINARY [DOCKERFILE]

BINARY is built the way deployment/Dockerfile builds it (`swift build -c release --static-swift-stdlib
--product dicom-etl`, on the same Debian 12 packages). The check:
1. reads the runtime stage's package list from the Dockerfile (between the runtime-packages markers);
2. closes it over the packages' Depends/Pre-Depends as installed here (dpkg's database; no network);
3. maps every library `ldd BINARY` resolves to the Debian package that owns it (`dpkg -S`) and fails
   when a library is not found, comes from no package (e.g. the Swift toolchain), or from a package
   outside that closure;
4. runs the binary (`--help`) to prove it loads;
5. repeats step 3 with the DCMTK runtime package removed from the list and fails unless that is
   rejected, so the check can fail.
Prints one line per library and exits non-zero on any problem.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def runtime_packages(dockerfile):
    text = open(dockerfile, encoding="utf-8").read()
    match = re.search(r"# runtime-packages:begin.*?\n(.*?)# runtime-packages:end", text, re.S)
    if not match:
        raise SystemExit("no runtime-packages block in the Dockerfile")
    command = match.group(1).replace("\\\n", " ")
    install = re.search(r"apt-get install ([^&]*)", command)
    if not install:
        raise SystemExit("no apt-get install in the runtime-packages block")
    return [token for token in install.group(1).split() if not token.startswith("-")]


def dpkg_query(package, field_format):
    result = subprocess.run(["dpkg-query", "-W", "-f", field_format, package], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def installed(package):
    status = dpkg_query(package, "${Status}")
    return status is not None and status.endswith("install ok installed")


def providers():
    """Virtual package → installed packages that provide it."""
    listing = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Provides}\t${Status}\n"],
                             capture_output=True, text=True, check=True).stdout
    provided = {}
    for line in listing.splitlines():
        package, provides, status = line.split("\t")
        if not status.endswith("installed"):
            continue
        for item in provides.split(","):
            name = item.strip().split(" ")[0].split(":")[0]
            if name:
                provided.setdefault(name, []).append(package)
    return provided


def closure(packages, provided):
    """The packages and everything they depend on, as installed on this machine."""
    seen, pending, absent = set(), list(packages), []
    while pending:
        package = pending.pop()
        if package in seen:
            continue
        seen.add(package)
        if not installed(package):
            absent.append(package)
            continue
        fields = dpkg_query(package, "${Depends}, ${Pre-Depends}") or ""
        for clause in fields.split(","):
            alternatives = [a.strip().split(" ")[0].split(":")[0] for a in clause.split("|") if a.strip()]
            chosen = next((a for a in alternatives if installed(a)), None)
            if chosen is None:
                chosen = next((p for a in alternatives for p in provided.get(a, [])), None)
            if chosen:
                pending.append(chosen)
    return seen, absent


def ldd(binary):
    output = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("linux-vdso") or not line:
            continue
        if "=> not found" in line:
            libraries.append((line.split()[0], None))
        elif "=>" in line:
            name, path = line.split("=>")[0].strip(), line.split("=>")[1].split("(")[0].strip()
            libraries.append((name, path))
        else:
            path = line.split("(")[0].strip()
            libraries.append((os.path.basename(path), path))
    return libraries


def owner(path):
    """The package owning a library file (trying the path, its real path and the /usr-merged twin)."""
    candidates = [path, os.path.realpath(path)]
    for candidate in list(candidates):
        if candidate.startswith("/usr/lib/") or candidate.startswith("/usr/lib64/"):
            candidates.append(candidate[4:])
        elif candidate.startswith("/lib/") or candidate.startswith("/lib64/"):
            candidates.append("/usr" + candidate)
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            line = result.stdout.splitlines()[0]
            if line.startswith("diversion by"):
                continue
            return line.split(":")[0].strip()
    return None


def problems(libraries, allowed):
    found = []
    for name, path in libraries:
        if path is None:
            found.append(f"{name}: not found")
            continue
        package = owner(path)
        if package is None:
            found.append(f"{name} ({path}): owned by no Debian package")
        elif package not in allowed:
            found.append(f"{name} ({path}): package {package} is not installed by the runtime stage")
    return found


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    dockerfile = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "deployment", "Dockerfile")
    packages = runtime_packages(dockerfile)
    provided = providers()
    allowed, absent = closure(packages, provided)
    libraries = ldd(binary)
    print(f"runtime stage installs {len(packages)} packages ({' '.join(packages)}); "
          f"with dependencies {len(allowed)}; not installed here: {' '.join(absent) or 'none'}")
    failures = []
    for name, path in libraries:
        package = owner(path) if path else None
        print(f"  {name:28} {path or 'NOT FOUND':55} {package or '-'}")
    failures += problems(libraries, allowed)
    swift_runtime = [name for name, _ in libraries if re.match(r"lib(swift|Foundation|dispatch|BlocksRuntime|_Foundation)", name)]
    if swift_runtime:
        failures.append("the Swift runtime is linked dynamically (expected --static-swift-stdlib): " + " ".join(swift_runtime))
    absent_libraries = [p for p in absent if p.startswith("lib")]
    if absent_libraries:
        failures.append("runtime packages not installed on this machine, so not checked: " + " ".join(absent_libraries))

    started = subprocess.run([binary, "--help"], capture_output=True, text=True)
    if started.returncode != 0 or "USAGE" not in started.stdout.upper():
        failures.append(f"the binary does not start (exit {started.returncode})")

    # The check must be able to fail: without DCMTK's runtime package the DCMTK libraries are rejected.
    reduced = [p for p in packages if not p.startswith("libdcmtk")]
    reduced_allowed, _ = closure(reduced, provided)
    rejected = [p for p in problems(libraries, reduced_allowed) if "libdcmtk" in p or "libdcm" in p]
    if not rejected:
        failures.append("self-check: removing libdcmtk17 from the runtime packages was not detected")

    total, bad = len(libraries), len(failures)
    for failure in failures:
        print("FAIL: " + failure)
    print(f"runtime libraries: {total} libraries checked, self-check rejected {len(rejected)} without DCMTK; "
          f"{'ok' if not failures else str(bad) + ' problem(s)'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
