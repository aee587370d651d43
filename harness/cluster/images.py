"""Local image builds for the chaos cluster: built here, never pulled, cached by recipe hash.

Model: every image ``<name>`` has a recipe folder ``harness/cluster/recipes/<name>/`` (Dockerfile
and files; ``base`` is made with debootstrap instead). Its tag is ``mc-<name>:<hash>`` where the
12-hex hash covers the parent's hash, every file of the build context (name, exec bit, bytes) and
the inputs that are not files (base: debootstrap arguments and the host's apt sources/config;
toxiproxy: the Go module version). A tag that exists is never rebuilt. Every image carries the
labels ``mc.image=<name>`` and ``mc.recipe=<hash>``. The node image puts ``multiconnect/`` in its
last layer, so a source change rebuilds only that layer.

``ensure_images(client)`` → ``{"base": "mc-base:…", "db": …, "nfs": …, "toxiproxy": …,
"node": …}``; ``overrides={"db": "mysql:8.0"}`` uses a local image as given instead.
CLI: ``python -m harness.cluster.images [NAME ...] [--force NAME|all] [--prune]``;
``prune_stale_images(client, keep)`` drops older tags that no container uses.

How to run each image (environment, ports, capabilities, mounts, readiness, measured
costs): ``docs/images.md``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from harness.cluster.engine import engine_url, print_to_stderr

Progress = Callable[[str], None]

ALL_IMAGES: tuple[str, ...] = ("base", "db", "nfs", "toxiproxy", "node")
PARENTS: dict[str, str | None] = {
    "base": None, "db": "base", "nfs": "base", "toxiproxy": "base", "node": "base",
}
IMAGES_DIR = Path(__file__).resolve().parent / "recipes"
SOURCE_DIR = Path(__file__).resolve().parents[2] / "multiconnect"
RECIPE_FORMAT = "mc-image-recipe/1"  # bump to invalidate every cached image

DEBOOTSTRAP_ARGS: tuple[str, ...] = ("--variant=minbase", "bookworm")
HOST_APT_PATHS: tuple[str, ...] = (
    "etc/apt/sources.list", "etc/apt/sources.list.d", "etc/apt/apt.conf.d",
)
BASE_CHANGES: tuple[str, ...] = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["/bin/bash"]',
)
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
TOXIPROXY_VERSION = "v2.12.0"
IGNORED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                           ".DS_Store"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".tmp", "~")


class ImageError(RuntimeError):
    """An image could not be made available."""


class ImageBuildError(ImageError):
    """A build step failed; ``image`` and ``step`` name it, ``tail`` holds its last output."""

    def __init__(self, image: str, step: str, tail: str) -> None:
        super().__init__(f"image {image!r}: {step} failed:\n{tail}")
        self.image, self.step, self.tail = image, step, tail


class ImageOverrideMissing(ImageError):
    """An override names an image that is not present in the local engine."""


@dataclass(frozen=True)
class ImageResult:
    """What ensure did for one image."""

    name: str
    ref: str
    status: str  # "built" | "cached" | "override"
    seconds: float
    recipe: str  # recipe hash ("" for an override)


# --------------------------------------------------------------------------- recipe hashing


def cache_dir() -> Path:
    """Per-user cache (``$XDG_CACHE_HOME/mc-chaos``, default ``~/.cache/mc-chaos``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "mc-chaos"


def _walk(root: Path, arc_prefix: str) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in IGNORED_NAMES and not d.startswith("."))
        for fn in sorted(filenames):
            if fn in IGNORED_NAMES or fn.startswith(".") or fn.endswith(IGNORED_SUFFIXES):
                continue
            path = Path(dirpath) / fn
            rel = path.relative_to(root).as_posix()
            yield f"{arc_prefix}{rel}", path


def context_files(
    name: str, images_dir: Path = IMAGES_DIR, source_dir: Path = SOURCE_DIR
) -> dict[str, Path]:
    """The files of an image's build context (arcname → path), excluding late build products.

    Every recipe is ``images_dir/<name>/``; the node image also gets ``source_dir`` as
    ``multiconnect/``. The toxiproxy binary is added at build time (hashed by its version).
    """
    folder = images_dir / name
    if not folder.is_dir():
        raise ImageError(f"no recipe folder for image {name!r} at {folder}")
    files = dict(_walk(folder, ""))
    if name == "node" and source_dir.is_dir():
        files.update(_walk(source_dir, "multiconnect/"))
    return dict(sorted(files.items()))


def host_apt_inputs(root: Path = Path("/")) -> list[tuple[str, bytes]]:
    """The host's apt sources and configuration (path, content), as copied into base."""
    out: list[tuple[str, bytes]] = []
    for rel in HOST_APT_PATHS:
        p = root / rel
        if p.is_file():
            out.append((rel, p.read_bytes()))
        elif p.is_dir():
            for child in sorted(p.iterdir()):
                if child.is_file():
                    out.append((f"{rel}/{child.name}", child.read_bytes()))
    return out


def extra_inputs(name: str, apt_root: Path = Path("/")) -> list[tuple[str, bytes]]:
    """Recipe inputs that are not files of the build context."""
    if name == "base":
        return [("debootstrap", " ".join(DEBOOTSTRAP_ARGS).encode()),
                *((f"host:{p}", c) for p, c in host_apt_inputs(apt_root))]
    if name == "toxiproxy":
        return [("go-module", f"{TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}".encode())]
    return []


def recipe_hash(
    name: str,
    parent_hash: str | None,
    files: Mapping[str, Path],
    extra: Iterable[tuple[str, bytes]] = (),
) -> str:
    """12 hex digits over the parent's hash, every context file (name, exec bit, bytes), extras."""
    h = hashlib.sha256()

    def put(tag: str, data: bytes) -> None:
        h.update(f"{tag}\0{len(data)}\0".encode())
        h.update(data)

    put("format", RECIPE_FORMAT.encode())
    put("name", name.encode())
    put("parent", (parent_hash or "").encode())
    for arc in sorted(files):
        path = files[arc]
        put("file", arc.encode())
        put("exec", b"1" if os.access(path, os.X_OK) else b"0")
        put("content", path.read_bytes())
    for key, value in extra:
        put(f"extra:{key}", value)
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- helpers


def _fmt(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@contextmanager
def _image_lock(name: str) -> Iterator[None]:
    """Serialise builders of one image across processes (pytest-xdist, parallel CI jobs)."""
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _image_exists(client: docker.DockerClient, ref: str) -> docker.models.images.Image | None:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _run(cmd: list[str], image: str, step: str, env: Mapping[str, str] | None = None,
         log: Path | None = None) -> None:
    """Run a host command; on failure raise ImageBuildError with its output tail."""
    proc = subprocess.run(cmd, env=dict(env) if env else None, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise ImageBuildError(image, step, f"exit {proc.returncode}\n{tail}")


# --------------------------------------------------------------------------- base (debootstrap)


def _build_base(client: docker.DockerClient, ref: str, recipe: str, progress: Progress) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError("base", "step 1/4 debootstrap",
                              "debootstrap needs root; run as root or load an image and pass "
                              "overrides={'base': '<ref>'}")
    if shutil.which("debootstrap") is None:
        if not Path("/etc/debian_version").exists():
            raise ImageBuildError("base", "step 1/4 debootstrap",
                                  "debootstrap is not installed (and this is not Debian)")
        t0 = time.monotonic()
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(["apt-get", "update"], "base", "apt-get update (for debootstrap)", env=env)
        _run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"], "base",
             "apt-get install debootstrap", env=env)
        progress(f"[images] base: installed debootstrap ({_fmt(time.monotonic() - t0)})")
    work = cache_dir() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="base-", dir=work))
    root = tmp / "rootfs"
    try:
        steps = 4
        t0 = time.monotonic()
        label = f"debootstrap {' '.join(DEBOOTSTRAP_ARGS)}"
        _run(["debootstrap", *DEBOOTSTRAP_ARGS, str(root)], "base", f"step 1/{steps} {label}",
             log=cache_dir() / "logs" / "base-debootstrap.log")
        progress(f"[images] base: step 1/{steps} {label} ({_fmt(time.monotonic() - t0)})")

        t0 = time.monotonic()
        _configure_rootfs(root)
        progress(f"[images] base: step 2/{steps} copy host apt sources + apt.conf.d "
                 f"({_fmt(time.monotonic() - t0)})")

        t0 = time.monotonic()
        _clean_rootfs(root)
        progress(f"[images] base: step 3/{steps} drop cached .debs, apt lists, docs "
                 f"({_fmt(time.monotonic() - t0)})")

        t0 = time.monotonic()
        tar_path = tmp / "rootfs.tar"
        _run(["tar", "-C", str(root), "-c", "-f", str(tar_path), "."], "base",
             f"step 4/{steps} tar")
        changes = [*BASE_CHANGES, "LABEL mc.image=base", f"LABEL mc.recipe={recipe}"]
        repo, tag = ref.rsplit(":", 1)
        try:
            with open(tar_path, "rb") as fh:
                client.api.import_image(src=fh, repository=repo, tag=tag, changes=changes)
        except docker.errors.APIError as exc:
            raise ImageBuildError("base", f"step 4/{steps} docker import", str(exc)) from exc
        progress(f"[images] base: step 4/{steps} tar | docker import "
                 f"({_fmt(time.monotonic() - t0)})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _configure_rootfs(root: Path) -> None:
    """Make apt inside the image resolve like on the host; no docs in later installs."""
    apt = root / "etc/apt"
    (apt / "sources.list").unlink(missing_ok=True)
    for sub in ("sources.list.d", "apt.conf.d"):
        d = apt / sub
        d.mkdir(parents=True, exist_ok=True)
        if sub == "sources.list.d":
            for child in d.iterdir():
                child.unlink()
    for rel, content in host_apt_inputs():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    dpkg = root / "etc/dpkg/dpkg.cfg.d"
    dpkg.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(IMAGES_DIR / "base" / "dpkg-nodoc.cfg", dpkg / "01-mc-nodoc")


def _clean_rootfs(root: Path) -> None:
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
                    "var/cache/apt/*.bin", "var/lib/apt/lists/*", "var/log/*.log",
                    "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*"):
        for p in root.glob(pattern):
            if p.name in ("lock", "partial", "locale.alias"):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    docs = root / "usr/share/doc"
    if docs.is_dir():
        for p in docs.rglob("*"):
            if (p.is_file() or p.is_symlink()) and p.name != "copyright":
                p.unlink()


# --------------------------------------------------------------------------- toxiproxy binary


GO_MIN = (1, 23)  # toxiproxy v2.12.0's go.mod: go 1.23.0


def go_version(go: str) -> tuple[int, int] | None:
    """(major, minor) of a Go toolchain (``go env GOVERSION``: "go1.23.5"), or None."""
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                             timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"go(\d+)\.(\d+)", out.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def go_candidates() -> list[str]:
    """``go`` on PATH, the upstream tarball's /usr/local/go, then Debian's versioned
    toolchains (golang-1.NN-go: /usr/lib/go-1.NN, newest first)."""
    found = [shutil.which("go"), "/usr/local/go/bin/go"]
    debian = sorted(Path("/usr/lib").glob("go-1.*/bin/go"),
                    key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])],
                    reverse=True)
    found += [str(p) for p in debian]
    return [g for g in dict.fromkeys(found) if g and Path(g).is_file()]


def find_go(candidates: list[str] | None = None) -> str | None:
    """The first Go toolchain new enough (>= 1.23) to build toxiproxy, else None."""
    for go in go_candidates() if candidates is None else candidates:
        v = go_version(go)
        if v is not None and v >= GO_MIN:
            return go
    return None


BACKPORTS_GO = "golang-1.23-go"  # Debian 12's own Go is 1.19; bookworm-backports has 1.23


def _debian_codename(os_release: Path = Path("/etc/os-release")) -> str | None:
    try:
        m = re.search(r"^VERSION_CODENAME=\"?(\w+)", os_release.read_text(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def _install_backports_go(progress: Progress) -> None:
    """Install Debian's golang-1.23-go from bookworm-backports (→ /usr/lib/go-1.23/bin/go).

    The backports suite is given to these two apt runs only, through a temporary sources
    folder holding the host's sources plus backports: the host's apt sources (which the base
    image's recipe hash covers and the base image copies) stay as they are."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mc-apt-") as tmp:
        parts = Path(tmp)
        host_parts = Path("/etc/apt/sources.list.d")
        if host_parts.is_dir():
            for f in host_parts.iterdir():
                if f.suffix in (".list", ".sources") and f.is_file():
                    shutil.copyfile(f, parts / f.name)
        (parts / "mc-bookworm-backports.list").write_text(
            "deb http://deb.debian.org/debian bookworm-backports main\n")
        opts = ["-o", f"Dir::Etc::SourceParts={parts}"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        step = f"apt-get install {BACKPORTS_GO} (bookworm-backports)"
        progress(f"[images] toxiproxy: no Go >= 1.23; installing Debian's {BACKPORTS_GO} "
                 "from bookworm-backports")
        _run(["apt-get", *opts, "update"], "toxiproxy", f"{step}: apt-get update", env=env)
        _run(["apt-get", *opts, "install", "-y", "--no-install-recommends", BACKPORTS_GO],
             "toxiproxy", step, env=env)
    progress(f"[images] toxiproxy: installed {BACKPORTS_GO} ({_fmt(time.monotonic() - t0)})")


def toxiproxy_binary(progress: Progress = print_to_stderr) -> Path:
    """Build (once) the toxiproxy server with the host's Go toolchain; return its path."""
    out_dir = cache_dir() / f"toxiproxy-{TOXIPROXY_VERSION}"
    binary = out_dir / "server"
    if binary.is_file():
        return binary
    go = find_go()
    step = f"go install {TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}"
    if go is None and _debian_codename() == "bookworm" and os.geteuid() == 0:
        _install_backports_go(progress)
        go = find_go()
    if go is None:
        raise ImageBuildError(
            "toxiproxy", step,
            "no Go toolchain >= 1.23 is installed: on Debian 12 `make setup` installs "
            "golang-1.23-go from bookworm-backports; or install Go, or build/load a toxiproxy "
            "image yourself and pass overrides={'toxiproxy': '<ref>'}",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(out_dir), CGO_ENABLED="0")
    t0 = time.monotonic()
    _run([go, "install", f"{TOXIPROXY_MODULE}@{TOXIPROXY_VERSION}"], "toxiproxy", step, env=env)
    progress(f"[images] toxiproxy: {step} ({_fmt(time.monotonic() - t0)})")
    if not binary.is_file():
        raise ImageBuildError("toxiproxy", step, f"go install did not produce {binary}")
    return binary


# --------------------------------------------------------------------------- docker build


def _context_tar(files: Mapping[str, Path], dirs: Iterable[str] = ()) -> io.BytesIO:
    """A deterministic tar of the context (root-owned, mtime 0, modes 0644/0755)."""
    buf = io.BytesIO()
    all_dirs: set[str] = set(dirs)
    for arc in files:
        parts = arc.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            all_dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in sorted(all_dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for arc in sorted(files):
            data = files[arc].read_bytes()
            info = tarfile.TarInfo(arc)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if os.access(files[arc], os.X_OK) else 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


class _StepReporter:
    """Turns the legacy builder's stream into one timed progress line per finished step."""

    def __init__(self, name: str, progress: Progress) -> None:
        self.name, self.progress = name, progress
        self.current: str | None = None
        self.started = 0.0
        self.cached = False
        self.output: list[str] = []

    def feed(self, text: str) -> None:
        for line in text.splitlines():
            m = _STEP.match(line)
            if m:
                self.finish()
                self.current = f"step {m.group(1)}/{m.group(2)} {_short(m.group(3))}"
                self.started = time.monotonic()
                self.output = []
                self.cached = False
            elif line.strip():
                self.cached = self.cached or line.strip() == "---> Using cache"
                self.output.append(line)
                del self.output[:-40]

    def finish(self) -> None:
        if self.current is not None:
            took = _fmt(time.monotonic() - self.started)
            self.progress(f"[images] {self.name}: {self.current} "
                          f"({took}{', layer cache' if self.cached else ''})")
            self.current = None

    def fail(self, error: str) -> ImageBuildError:
        step = self.current or "build"
        return ImageBuildError(self.name, step, "\n".join([*self.output[-30:], error]))


def _docker_build(client: docker.DockerClient, name: str, ref: str, recipe: str,
                  parent_ref: str | None, files: Mapping[str, Path], nocache: bool,
                  progress: Progress) -> None:
    dirs = ["multiconnect"] if name == "node" else []
    ctx = _context_tar(files, dirs)
    reporter = _StepReporter(name, progress)
    try:
        stream = client.api.build(
            fileobj=ctx, custom_context=True, tag=ref, rm=True, forcerm=True, pull=False,
            nocache=nocache, decode=True, timeout=3600,
            buildargs={"BASE": parent_ref} if parent_ref else None,
            labels={"mc.image": name, "mc.recipe": recipe},
        )
        for chunk in stream:
            if "stream" in chunk:
                reporter.feed(chunk["stream"])
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise reporter.fail(detail)
    except docker.errors.APIError as exc:
        raise reporter.fail(str(exc)) from exc
    reporter.finish()
    if _image_exists(client, ref) is None:
        raise ImageBuildError(name, "build", f"the build ended without tagging {ref}")


# --------------------------------------------------------------------------- ensure


def _closure(names: Iterable[str], overrides: Collection[str] = ()) -> list[str]:
    """``names`` plus the parents they are built on (an overridden image needs none)."""
    wanted: set[str] = set()
    for n in names:
        if n not in PARENTS:
            raise ValueError(f"unknown image {n!r}; known: {', '.join(ALL_IMAGES)}")
        cur: str | None = n
        while cur is not None:
            wanted.add(cur)
            cur = None if cur in overrides else PARENTS[cur]
    return [n for n in ALL_IMAGES if n in wanted]


def _recipe_of(name: str, parent_hash: str | None, files: Mapping[str, Path]) -> str:
    return recipe_hash(name, parent_hash, files, extra_inputs(name))


def planned_refs(
    names: Collection[str] = ALL_IMAGES, *, prefix: str = "mc-", source_dir: Path = SOURCE_DIR
) -> dict[str, str]:
    """The reference :func:`build_images` looks for (and would build) for each of ``names``
    and their parents, from the recipes as they are now: name → ``mc-<name>:<hash>``. Builds
    nothing and needs no engine (``python -m harness doctor`` checks these are present)."""
    hashes: dict[str, str] = {}
    refs: dict[str, str] = {}
    for name in _closure(names):
        parent = PARENTS[name]
        files = context_files(name, source_dir=source_dir)
        hashes[name] = _recipe_of(name, hashes.get(parent) if parent else None, files)
        refs[name] = f"{prefix}{name}:{hashes[name]}"
    return refs


def build_images(
    client: docker.DockerClient,
    names: Collection[str] = ALL_IMAGES,
    overrides: Mapping[str, str] | None = None,
    progress: Progress = print_to_stderr,
    *,
    force: Collection[str] = (),
    prefix: str = "mc-",
    source_dir: Path = SOURCE_DIR,
) -> list[ImageResult]:
    """Ensure ``names`` (and their parents) exist; one :class:`ImageResult` per image handled.

    ``force`` rebuilds those images from scratch (no layer cache) even if tagged;
    ``prefix`` namespaces the tags (benchmarks build cold copies under another prefix).
    """
    overrides = dict(overrides or {})
    for n in [*overrides, *force]:
        if n not in PARENTS:
            raise ValueError(f"unknown image {n!r}; known: {', '.join(ALL_IMAGES)}")
    refs: dict[str, str] = {}
    hashes: dict[str, str] = {}
    results: list[ImageResult] = []
    order = _closure(names, overrides)
    present: dict[str, str] = {}
    for name in order:  # check every override before building anything
        if name in overrides:
            image = _image_exists(client, overrides[name])
            if image is None:
                ref = overrides[name]
                raise ImageOverrideMissing(
                    f"override for image {name!r} is {ref!r}, which is not present in the local "
                    f"Docker engine; no registry is used here, so pull it (`docker pull {ref}`) "
                    f"or load it (`docker load -i <file>`) first"
                )
            present[name] = image.id
    for name in order:
        t0 = time.monotonic()
        if name in overrides:
            ref = overrides[name]
            refs[name], hashes[name] = ref, present[name]
            progress(f"[images] {name}: override {ref} (present locally)")
            results.append(ImageResult(name, ref, "override", time.monotonic() - t0, ""))
            continue
        parent = PARENTS[name]
        files = context_files(name, source_dir=source_dir)
        recipe = _recipe_of(name, hashes.get(parent) if parent else None, files)
        ref = f"{prefix}{name}:{recipe}"
        with _image_lock(f"{prefix}{name}"):
            if name not in force and _image_exists(client, ref) is not None:
                status = "cached"
            else:
                if name == "base":
                    _build_base(client, ref, recipe, progress)
                else:
                    build_files = dict(files)
                    if name == "toxiproxy":
                        build_files["toxiproxy-server"] = toxiproxy_binary(progress)
                    _docker_build(client, name, ref, recipe, refs[parent] if parent else None,
                                  build_files, nocache=name in force, progress=progress)
                status = "built"
        seconds = time.monotonic() - t0
        progress(f"[images] {name}: {status} {ref} ({_fmt(seconds)})")
        refs[name], hashes[name] = ref, recipe
        results.append(ImageResult(name, ref, status, seconds, recipe))
    return results


def ensure_images(
    client: docker.DockerClient,
    names: Collection[str] = ALL_IMAGES,
    overrides: dict[str, str] | None = None,
    progress: Progress = print_to_stderr,
    **kwargs: object,
) -> dict[str, str]:
    """Make every named image available locally (building only what is missing): name → ref."""
    results = build_images(client, names, overrides, progress, **kwargs)  # type: ignore[arg-type]
    return {r.name: r.ref for r in results if r.name in names}


def ship_images(source: docker.DockerClient, target: docker.DockerClient, refs: Iterable[str],
                progress: Progress = print_to_stderr, chunk_note: int = 64 << 20) -> list[str]:
    """Copy every image of ``refs`` that ``target`` lacks from ``source`` (``docker save``
    streamed into ``docker load`` through this process; tags and labels kept, nothing
    rebuilt), with a progress line every ``chunk_note`` bytes. Returns the shipped refs."""
    shipped: list[str] = []
    where = engine_url(target)
    for ref in refs:
        try:
            target.images.get(ref)
            continue
        except docker.errors.ImageNotFound:
            pass
        t0 = time.monotonic()
        progress(f"[images] shipping {ref} to {where} (save | load)")
        sent: list[int] = []
        target.images.load(_counted(source.api.get_image(ref), sent, ref, progress, chunk_note))
        target.images.get(ref)  # ImageNotFound here: the load did not give the tag
        shipped.append(ref)
        progress(f"[images] shipped {ref}: {sum(sent) >> 20} MB in "
                 f"{time.monotonic() - t0:.1f} s")
    return shipped


def _counted(stream: Iterable[bytes], sent: list[int], ref: str, progress: Progress,
             every: int) -> Iterator[bytes]:
    """``stream`` passed through, each chunk's size appended to ``sent``, a progress line
    every ``every`` bytes."""
    next_note = every
    for chunk in stream:
        sent.append(len(chunk))
        if sum(sent) >= next_note:
            progress(f"[images]   {ref}: {sum(sent) >> 20} MB sent")
            next_note += every
        yield chunk


def prune_stale_images(
    client: docker.DockerClient, keep: Mapping[str, str], progress: Progress = print_to_stderr,
    prefix: str = "mc-",
) -> list[str]:
    """For each image name in ``keep`` (name → current ref), remove its other tags.

    Only ``<prefix><name>:<hash>`` tags of images labelled ``mc.image`` are considered; an
    image a container still uses is left alone (docker refuses to remove it without force).
    Returns the removed references.
    """
    removed: list[str] = []
    for image in client.images.list(filters={"label": "mc.image"}):
        for tag in image.tags:
            repo = tag.rsplit(":", 1)[0]
            name = repo[len(prefix):] if repo.startswith(prefix) else None
            if name not in keep or tag == keep[name]:
                continue
            try:
                client.images.remove(tag)
            except docker.errors.APIError as exc:
                progress(f"[images] kept {tag}: {exc.explanation or exc}")
                continue
            removed.append(tag)
            progress(f"[images] removed stale {tag}")
    return removed


def image_size_mb(client: docker.DockerClient, ref: str) -> float:
    """Size of an image as `docker images` shows it, in MB (10^6 bytes)."""
    return client.images.get(ref).attrs.get("Size", 0) / 1e6


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.cluster.images [NAME ...] [--force NAME]``: build all, print a table."""
    from harness.cluster.engine import EngineUnavailable, ensure_engine

    ap = argparse.ArgumentParser(prog="python -m harness.cluster.images", description=main.__doc__)
    ap.add_argument("names", nargs="*", default=list(ALL_IMAGES), help="images (default all)")
    ap.add_argument("--force", action="append", default=[], metavar="NAME",
                    help="rebuild NAME without any cache ('all' for every image); repeatable")
    ap.add_argument("--prune", action="store_true",
                    help="then remove older mc-* images that no container uses")
    args = ap.parse_args(argv)
    force = set(ALL_IMAGES) if "all" in args.force else set(args.force)
    try:
        client = ensure_engine()
        results = build_images(client, args.names, force=force)
        if args.prune:
            prune_stale_images(client, {r.name: r.ref for r in results if r.status != "override"})
    except (ImageError, EngineUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'image':<10} {'status':<8} {'seconds':>8} {'size MB':>8}  reference")
    for r in results:
        print(f"{r.name:<10} {r.status:<8} {r.seconds:>8.1f} "
              f"{image_size_mb(client, r.ref):>8.0f}  {r.ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
