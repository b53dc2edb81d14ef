#!/usr/bin/env python3
"""Write a seed corpus per fuzz target into OUTDIR/<target>/.

Seeds are real files: taken from the layers of the testbed's OCI layouts
(../shared/testbed, built by its make-images.sh) and from the advisory fixtures
(../shared/feeds), plus a few small hand-written files for formats the testbed has
no image of (rpm, apk, gems, .NET, Composer, Cargo). Nothing here is committed as
data: the corpus is rebuilt on every smoke run.

usage: make-seeds.py OUTDIR [--images DIR] [--feeds DIR]
"""
import argparse
import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
import zlib

# target -> (globs on the image path, most seeds, largest seed in bytes, selector byte or None)
FROM_IMAGES = {
    "dpkg_status": (["var/lib/dpkg/status"], 1, 1 << 20, b"\x00"),
    "dpkg_copyright": (["usr/share/doc/*/copyright", "var/lib/dpkg/info/*.md5sums"], 4, 64 << 10, None),
    "python_metadata": (["*.dist-info/METADATA"], 4, 64 << 10, b"\x00"),
    "npm_package_json": (["*/node_modules/*/package.json"], 4, 64 << 10, None),
    "npm_lock": (["*/package-lock.json"], 1, 1 << 20, b"\x00"),
    "passwd_group": (["etc/passwd", "etc/group"], 2, 64 << 10, None),
    "os_release": (["usr/lib/os-release", "etc/os-release"], 1, 64 << 10, None),
    "go_buildinfo": (["usr/local/bin/*", "app/*", "usr/bin/*"], 2, 8 << 20, None),
    "elf_parse": (["usr/bin/dpkg", "usr/bin/ls"], 1, 1 << 20, None),
    "java_archive": (["*.jar", "*.war"], 3, 4 << 20, None),
    "java_manifest": (["*/META-INF/MANIFEST.MF"], 2, 64 << 10, None),
    "secret_rules": (["*.env", "*.pem", "*/.docker/config.json", "*/credentials", "*.key"], 4, 64 << 10, None),
    "runtime_version": (["usr/lib/jvm/*/release"], 1, 64 << 10, b"\x03"),
}

HAND_WRITTEN = {
    "apk_installed": [
        b"C:Q1abcdefghijklmnopqrstuvwxyz0=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\no:musl\n"
        b"F:lib\nR:ld-musl-x86_64.so.1\nZ:Q1Y3W0JlbLq2fRt6eOEBUn+y5Xq8A=\n\n"
        b"P:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\no:busybox\nF:bin\nR:busybox\n\n",
    ],
    "python_lock": [
        b"\x00[[package]]\nname = \"requests\"\nversion = \"2.31.0\"\n\n[[package]]\nname = \"idna\"\nversion = \"3.4\"\n",
        b"\x01" + json.dumps({"default": {"requests": {"version": "==2.31.0"}}, "develop": {}}).encode(),
        b"\x02version = 1\n[[package]]\nname = \"urllib3\"\nversion = \"2.0.7\"\nsource = { registry = \"https://pypi.org/simple\" }\n",
    ],
    "python_requirements": [b"requests==2.31.0\nurllib3>=1.26 ; python_version < '3.12'\n-r other.txt\nflask[async]==3.0.0  # web\n"],
    "npm_lock": [
        b"\x01# yarn lockfile v1\n\n\"left-pad@^1.3.0\":\n  version \"1.3.0\"\n  resolved \"https://registry.yarnpkg.com/left-pad/-/left-pad-1.3.0.tgz\"\n",
        b"\x02lockfileVersion: '9.0'\npackages:\n  left-pad@1.3.0:\n    resolution: {integrity: sha512-x}\n",
    ],
    "ruby_gemspec": [
        b"# -*- encoding: utf-8 -*-\nGem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  s.version = \"2.2.8\"\n  s.licenses = [\"MIT\".freeze]\nend\n",
    ],
    "ruby_gemfile_lock": [b"GEM\n  remote: https://rubygems.org/\n  specs:\n    rack (2.2.8)\n    rails (7.0.8)\n      rack (>= 2.2.4)\n\nPLATFORMS\n  ruby\n"],
    "dotnet_deps": [
        json.dumps({"targets": {".NETCoreApp,Version=v8.0": {}}, "libraries": {
            "Newtonsoft.Json/13.0.1": {"type": "package", "sha512": "sha512-x"},
            "app/1.0.0": {"type": "project"}}}).encode(),
    ],
    "php_composer": [
        b"\x00" + json.dumps({"packages": [{"name": "monolog/monolog", "version": "3.5.0", "license": ["MIT"]}]}).encode(),
        b"\x01" + json.dumps({"packages": [{"name": "symfony/console", "version": "v6.4.1"}], "packages-dev": []}).encode(),
    ],
    "go_mod": [b"module example.com/app\n\ngo 1.21\n\nrequire (\n\tgolang.org/x/net v0.17.0\n\tgithub.com/pkg/errors v0.9.1 // indirect\n)\n\nreplace golang.org/x/net => golang.org/x/net v0.19.0\n"],
    "cargo_lock": [b"version = 3\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.190\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"],
    "dockerfile": [b"FROM debian:12\nRUN apt-get update && \\\n    apt-get install -y curl\nUSER 1000\nHEALTHCHECK CMD curl -f http://localhost/\nCMD [\"/app\"]\n",
                   b"/bin/sh -c #(nop)  CMD [\"bash\"]\n|1 ARG=1 /bin/sh -c apt-get install -y curl\n"],
    "secret_rules": [b"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n-----BEGIN RSA PRIVATE KEY-----\n"],
    "runtime_version": [b"\x00xx Python 3.11.7 xx", b"\x01node v20.11.1\x00", b"\x04BusyBox v1.36.1 (2023-11-07) multi-call binary"],
    "version_order": [
        b"\x001:1.2-3\x001.2-3~rc1\x001.2-3+b1",
        b"\x013.19.1-r0\x003.19.1_alpha2-r1\x003.19.1_p1",
        b"\x021:3.0.1-43.el9_0\x003.0.1-43.el9_0^post\x003.0.1~rc1-1",
        b"\x031.0.0rc1\x001!0.9\x001.0.post1.dev2",
        b"\x042.0.0-beta.1\x002.0.0\x001.9.9+build",
        b"\x05v0.0.0-20230101000000-abcdefabcdef\x00v1.2.3+incompatible\x00v1.2.3",
        b"\x061.0-SNAPSHOT\x001.0.0.RELEASE\x001-alpha-1",
        b"\x071.0.0.pre\x001.0.0\x001.0.a",
        b"\x081.0.0-preview.1\x001.0.0.0\x001.0.0+meta",
        b"\x09v1.0.0-RC1\x001.0.0-patch1\x001.0.0.1",
        b"\x0a1.0.0-alpha.1\x001.0.0\x000.9.0",
    ],
    "version_range": [b"\x001.2.3\x00>=1.0.0 <2.0.0 || ^3.0.0-beta.1", b"\x011.2.3\x00>=1.0, <1.5"],
}


def add(out, target, data, name=None):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def layer_blobs(layout):
    """Every layer blob of a layout, by reading its manifests."""
    blobs = os.path.join(layout, "blobs", "sha256")
    index = json.load(open(os.path.join(layout, "index.json")))
    todo = [m["digest"] for m in index.get("manifests", [])]
    seen = set()
    while todo:
        dg = todo.pop()
        if dg in seen:
            continue
        seen.add(dg)
        doc = json.load(open(os.path.join(blobs, dg.split(":", 1)[1])))
        todo += [m["digest"] for m in doc.get("manifests", [])]
        for layer in doc.get("layers", []):
            yield os.path.join(blobs, layer["digest"].split(":", 1)[1])


def from_images(out, images):
    counts = {t: 0 for t in FROM_IMAGES}
    smallest = None
    for name in sorted(os.listdir(images)):
        for blob in layer_blobs(os.path.join(images, name)):
            size = os.path.getsize(blob)
            if smallest is None or size < smallest[0]:
                smallest = (size, blob)
            with tarfile.open(blob, "r|*") as tar:
                for entry in tar:
                    if not entry.isfile():
                        continue
                    path = entry.name.lstrip("./")
                    data = None
                    for target, (globs, most, largest, selector) in FROM_IMAGES.items():
                        if counts[target] >= most or entry.size > largest:
                            continue
                        if not any(fnmatch.fnmatch(path, g) for g in globs):
                            continue
                        if data is None:
                            data = tar.extractfile(entry).read()
                        if target == "go_buildinfo" and b"\xff Go buildinf:" not in data:
                            continue
                        if target in ("elf_parse", "go_buildinfo") and not data.startswith(b"\x7fELF"):
                            continue
                        add(out, target, (selector or b"") + data)
                        counts[target] += 1
                        break
    if smallest and smallest[0] <= 8 << 20:
        add(out, "layer_tar", open(smallest[1], "rb").read(), "smallest-layer")
    return counts


def small_layers(out):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def file(name, data, mode=0o644):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        file("var/lib/dpkg/status", b"Package: a\nStatus: install ok installed\nVersion: 1\n\n")
        file("usr/bin/su", b"\x7fELF", 0o4755)
        link = tarfile.TarInfo("loop")
        link.type, link.linkname = tarfile.SYMTYPE, "loop"
        tar.addfile(link)
        wh = tarfile.TarInfo("etc/.wh.shadow")
        tar.addfile(wh)
    raw = buf.getvalue()
    add(out, "layer_tar", raw, "small.tar")
    add(out, "layer_tar", gzip.compress(raw), "small.tar.gz")


def java_seed(out):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nImplementation-Title: demo\nImplementation-Version: 1.0\n")
        z.writestr("META-INF/maven/org.example/demo/pom.properties", "groupId=org.example\nartifactId=demo\nversion=1.0\n")
    add(out, "java_archive", buf.getvalue(), "demo.jar")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("EGG-INFO/PKG-INFO", "Metadata-Version: 1.1\nName: demo\nVersion: 1.0\nLicense: MIT\n")
        z.writestr("demo/__init__.py", "")
    add(out, "python_egg", buf.getvalue(), "demo.egg")


def rpm_seeds(out):
    """An rpmdb (sqlite) holding one package rpmbuild made, and its header."""
    if not shutil.which("rpmbuild") or not shutil.which("rpm"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec = os.path.join(tmp, "seed.spec")
        with open(spec, "w") as f:
            f.write("Name: seed\nVersion: 1.0\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n"
                    "%description\ns\n%install\nmkdir -p %{buildroot}/etc\necho x > %{buildroot}/etc/seed\n"
                    "%files\n/etc/seed\n")
        top = os.path.join(tmp, "top")
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)
        try:
            run("rpmbuild", "--define", f"_topdir {top}", "-bb", spec)
            rpmfile = next(os.path.join(r, f) for r, _, fs in os.walk(top) for f in fs if f.endswith(".rpm"))
            db = os.path.join(tmp, "db")
            run("rpm", "--dbpath", db, "--initdb")
            run("rpm", "--dbpath", db, "--justdb", "--nodeps", "--ignorearch", "-i", rpmfile)
        except (subprocess.CalledProcessError, StopIteration):
            return
        for f in os.listdir(db):
            if f == "rpmdb.sqlite":
                data = open(os.path.join(db, f), "rb").read()
                add(out, "rpm_db", b"\x01" + data, "rpmdb.sqlite")
                try:
                    import sqlite3
                    con = sqlite3.connect(os.path.join(db, f))
                    for (blob,) in con.execute("select blob from Packages"):
                        add(out, "rpm_header", blob, "header")
                except Exception:
                    pass


def from_feeds(out, feeds):
    for root, _, files in os.walk(feeds):
        for f in sorted(files)[:4]:
            path = os.path.join(root, f)
            if os.path.getsize(path) > 1 << 20:
                continue
            data = open(path, "rb").read()
            rel = os.path.relpath(path, feeds)
            target = {"alpine": "feed_alpine", "debian": "feed_debian", "nvd": "feed_nvd", "osv": "feed_osv"}.get(rel.split(os.sep)[0])
            if target:
                add(out, target, data)


def sbom_seeds(out, images):
    syft = shutil.which("syft")
    layout = os.path.join(images, "debian-base")
    if syft and os.path.isdir(layout):
        r = subprocess.run([syft, "-q", f"oci-dir:{layout}", "-o", "syft-json"], capture_output=True)
        if r.returncode == 0:
            add(out, "sbom_import", r.stdout, "debian-base.syft.json")
    add(out, "sbom_import", json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [
        {"type": "library", "name": "requests", "version": "2.31.0", "purl": "pkg:pypi/requests@2.31.0"}]}).encode())
    add(out, "sbom_import", json.dumps({"spdxVersion": "SPDX-2.3", "packages": [
        {"name": "musl", "versionInfo": "1.2.4-r2", "externalRefs": [
            {"referenceType": "purl", "referenceLocator": "pkg:apk/alpine/musl@1.2.4-r2"}]}]}).encode())


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    ap.add_argument("out")
    ap.add_argument("--images", default=os.path.join(cache, "image-testbed", "images", "oci"))
    ap.add_argument("--feeds", default=os.environ.get("VIGIL_FEEDS", os.path.join(here, "..", "..", "shared", "feeds")))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for target, seeds in HAND_WRITTEN.items():
        for s in seeds:
            add(a.out, target, s)
    add(a.out, "rust_audit", zlib.compress(json.dumps({"packages": [
        {"name": "app", "version": "0.1.0", "source": "local", "root": True, "dependencies": [1]},
        {"name": "serde", "version": "1.0.190", "source": "crates.io"}]}).encode()), "audit-section")
    small_layers(a.out)
    java_seed(a.out)
    rpm_seeds(a.out)
    if os.path.isdir(a.feeds):
        from_feeds(a.out, a.feeds)
    if os.path.isdir(a.images):
        counts = from_images(a.out, a.images)
        missing = [t for t, n in counts.items() if n == 0]
        if missing:
            print("no testbed file for:", ", ".join(missing))
        sbom_seeds(a.out, a.images)
    else:
        print(f"no testbed images in {a.images}: hand-written seeds only")


if __name__ == "__main__":
    main()
