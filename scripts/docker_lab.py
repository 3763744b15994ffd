"""The lab in containers: the local base image, and a private Docker daemon.

    python3 scripts/docker_lab.py base [--cache DIR]   # build + import swimlib-base:bookworm
    python3 scripts/docker_lab.py daemon [--root DIR]  # a private dockerd until Ctrl-C

There is no image registry to pull ``debian`` from, so ``base`` makes the
image the Dockerfile starts FROM: ``mmdebstrap`` builds Debian bookworm with
python3 and haproxy from the Debian mirror, swimlib's runtime dependencies
(pyproject.toml, pinned to the versions installed in .venv) are installed
from pip wheels into /opt/swimlib/deps, and ``docker import`` loads the
tarball. The image is labelled with a hash of that recipe and not rebuilt
while it matches; ``--cache DIR`` also keeps the tarball for the next daemon.

``daemon`` runs dockerd for machines with no Docker service (as root):
everything under one directory (data root, exec root, socket), its own
config, the overlay2 storage driver (vfs where overlay2 fails), no iptables
rules, no IP forwarding and no default bridge, so it changes nothing on the
host but the bridges of the networks it is asked for. Ctrl-C or SIGTERM
stops it (by PID), and what it left is removed: the directory, and the
cgroups and containerd's socket directory it created.
tests/integration/test_docker_lab.py uses the same functions.

Standard library only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE_TAG = "swimlib-base:bookworm"
SUITE = "bookworm"
MIRRORS = ("deb http://deb.debian.org/debian bookworm main",
           "deb http://deb.debian.org/debian-security bookworm-security main")
#: Debian packages of the base (usr-is-merged: or init-system-helpers pulls usrmerge and perl).
PACKAGES = ("usr-is-merged", "python3", "haproxy")
#: Python of the image (bookworm's python3): the wheels must be for it.
IMAGE_PYTHON = "3.11"
#: Labels the base image with its recipe (a changed recipe rebuilds it).
RECIPE_LABEL = "org.swimlib.base-recipe"
#: Storage drivers to try, in order (docker_lab.start_daemon).
STORAGE_DRIVERS = ("overlay2", "vfs")
#: mmdebstrap took 19-30 s here; a slow mirror gets this long.
MMDEBSTRAP_TIMEOUT = 900.0


class DockerLabError(Exception):
    """A step failed; the message says which."""


def run(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """A bounded command; DockerLabError with its output when it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        raise DockerLabError(f"{argv[0]} did not finish in {timeout:.0f}s") from exc
    except FileNotFoundError as exc:
        raise DockerLabError(f"{argv[0]} is not installed") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise DockerLabError(f"{' '.join(argv[:3])} ... failed ({proc.returncode}):\n{tail}")
    return proc


def venv_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# ------------------------------------------------------------------- base


def requirements() -> list[str]:
    """pyproject's runtime dependencies, pinned to the versions .venv has (else as written)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps: list[str] = project["dependencies"]
    names = [re.split(r"[\s;\[<>=!~]", d, maxsplit=1)[0] for d in deps]
    code = ("import importlib.metadata as m, json, sys\n"
            "v = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: v[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(v))\n")
    out = run([venv_python(), "-c", code, *names], timeout=60.0).stdout
    versions: dict[str, str] = json.loads(out)
    return [f"{n}=={versions[n]}" if n in versions else spec for n, spec in zip(names, deps,
                                                                             strict=True)]


def wheel_platforms() -> list[str]:
    """manylinux tags bookworm's glibc (2.36) runs, newest first, for this machine's arch."""
    arch = platform.machine()
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [
        f"manylinux2014_{arch}"]


def mmdebstrap_argv(tarball: Path, deps: Path) -> list[str]:
    return ["mmdebstrap", "--variant=essential", "--format=tar", f"--include={','.join(PACKAGES)}",
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "locale",
                                                                   "info")),
            '--customize-hook=mkdir -p "$1/opt/swimlib"',
            f"--customize-hook=copy-in {deps} /opt/swimlib",
            '--customize-hook=rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*',
            SUITE, str(tarball), *MIRRORS]


def recipe_hash(pins: Sequence[str]) -> str:
    recipe = json.dumps([mmdebstrap_argv(Path("TAR"), Path("DEPS")), list(pins),
                         wheel_platforms(), IMAGE_PYTHON])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def image_label(tag: str, docker: Sequence[str] = ("docker",)) -> str | None:
    """The recipe label of image ``tag``, or None if there is no such image."""
    proc = subprocess.run([*docker, "image", "inspect", "--format",
                           "{{ index .Config.Labels \"" + RECIPE_LABEL + "\" }}", tag],
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)
    return proc.stdout.strip() if proc.returncode == 0 else None


def build_base(tag: str = BASE_TAG, cache: Path | None = None,
               docker: Sequence[str] = ("docker",), log: list[str] | None = None) -> str:
    """Build (or reuse) the base image; returns its recipe hash. ``docker`` is the client
    command (with ``-H`` for another daemon); ``log`` gets what was done."""
    notes = log if log is not None else []
    pins = requirements()
    key = recipe_hash(pins)
    if image_label(tag, docker) == key:
        notes.append(f"{tag} is current (recipe {key})")
        return key
    with tempfile.TemporaryDirectory(prefix="swimlib-base-", dir="/var/tmp") as tmp:
        tarball = (cache / f"swimlib-base-{key}.tar") if cache else Path(tmp) / "base.tar"
        if not tarball.exists():
            t0 = time.monotonic()
            deps = Path(tmp) / "deps"
            run([venv_python(), "-m", "pip", "install", "--quiet", "--no-compile",
                 "--disable-pip-version-check", "--only-binary=:all:",
                 "--python-version", IMAGE_PYTHON, "--implementation", "cp",
                 *(f"--platform={p}" for p in wheel_platforms()),
                 "--target", str(deps), *pins], timeout=600.0)
            t1 = time.monotonic()
            notes.append(f"wheels for {', '.join(pins)}: {t1 - t0:.1f}s")
            if cache:
                cache.mkdir(parents=True, exist_ok=True)
            partial = tarball.with_name(f"{tarball.stem}.partial.tar")
            run(mmdebstrap_argv(partial, deps), timeout=MMDEBSTRAP_TIMEOUT)
            partial.rename(tarball)
            notes.append(f"mmdebstrap {SUITE} ({', '.join(PACKAGES)}): "
                         f"{time.monotonic() - t1:.1f}s, {tarball.stat().st_size >> 20} MiB")
        else:
            notes.append(f"cached {tarball}")
        t2 = time.monotonic()
        run([*docker, "import", "--change", f"LABEL {RECIPE_LABEL}={key}",
             "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]',
             str(tarball), tag], timeout=300.0)
        notes.append(f"docker import {tag}: {time.monotonic() - t2:.1f}s")
    return key


# ----------------------------------------------------------------- daemon


def socket_path(root: Path) -> Path:
    return root / "docker.sock"


def docker_host(root: Path) -> str:
    return f"unix://{socket_path(root)}"


def dockerd_argv(root: Path, driver: str) -> list[str]:
    """A dockerd that keeps everything under ``root`` and leaves the host's network alone."""
    config = root / "daemon.json"
    if not config.exists():
        config.write_text("{}\n")  # not /etc/docker/daemon.json
    return ["dockerd", "--config-file", str(config), "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"),
            "--host", docker_host(root), "--storage-driver", driver,
            "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge=none"]


def daemon_ready(root: Path) -> bool:
    if not socket_path(root).exists():
        return False
    proc = subprocess.run(["docker", "-H", docker_host(root), "version", "--format",
                           "{{.Server.Version}}"], capture_output=True, text=True,
                          timeout=20, check=False, stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


#: What dockerd runs that outlives a SIGKILLed dockerd (their command lines name the root).
DAEMON_PROGRAMS = ("dockerd", "containerd", "containerd-shim-runc-v2")


def leftover_pids(root: Path, sid: int | None = None) -> list[int]:
    """Processes a SIGKILLed dockerd can leave behind, by PID: the containers' first
    processes (``init.pid`` files under the exec root, checked against the container's
    cgroup), then dockerd, containerd and the shims whose command lines name ``root``,
    and what else runs in dockerd's session ``sid`` (docker-proxy)."""
    pids = []
    tasks = root / "exec" / "containerd" / "daemon" / "io.containerd.runtime.v2.task"
    for pid_file in tasks.glob("*/*/init.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if pid_file.parent.name in Path(f"/proc/{pid}/cgroup").read_text():
                pids.append(pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            session = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3])
            if (os.path.basename(argv[0].decode(errors="replace")) in DAEMON_PROGRAMS
                    and any(str(root).encode() in arg for arg in argv)) or session == sid:
                pids.append(int(entry.name))
    return pids


def kill_pids(pids: Sequence[int], timeout: float = 10.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    for pid in pids:
        for _ in range(int(timeout / 0.05) + 1):
            if not Path(f"/proc/{pid}").exists() or time.monotonic() > deadline:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            status = Path(f"/proc/{pid}/stat")
            with contextlib.suppress(OSError):
                if status.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.05)


def host_dirs() -> list[Path]:
    """Directories outside its root that a daemon leaves: the cgroups it makes for its
    containers (``docker`` in each hierarchy) and containerd's shim socket directory."""
    cgroup = Path("/sys/fs/cgroup")
    found = [cgroup / "docker", *cgroup.glob("*/docker"), Path("/run/containerd/s"),
             Path("/run/containerd")]
    return [p for p in found if p.is_dir()]


def remove_host_dirs(before: Sequence[Path]) -> None:
    """Remove the :func:`host_dirs` that were not there ``before``, with the empty
    directories below them (the containers' cgroups, after a SIGKILLed daemon). Only
    empty ones: the kernel refuses to remove a cgroup in use, rmdir a directory with
    files in it."""
    for path in host_dirs():
        if path in before:
            continue
        below = sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                       reverse=True)
        for directory in [*below, path]:
            with contextlib.suppress(OSError):
                directory.rmdir()


def clear(root: Path, sid: int | None = None) -> list[str]:
    """Kill what still runs from ``root``, unmount what is mounted under it, delete the
    daemon's directories (not its logs). Returns what it had to do (nothing after a
    clean stop)."""
    done = []
    pids = leftover_pids(root, sid)
    if pids:
        kill_pids(pids)
        done.append(f"killed leftover processes {pids}")
    for point in mounts_under(root):
        if subprocess.run(["umount", point], capture_output=True, timeout=30,
                          check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30,
                           check=False)
        done.append(f"unmounted {point}")
    if mounts_under(root):
        raise DockerLabError(f"still mounted under {root}: {mounts_under(root)}; not deleting")
    for name in ("data", "exec"):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in ("docker.sock", "dockerd.pid"):
        (root / name).unlink(missing_ok=True)
    return done


def start_daemon(root: Path, drivers: Sequence[str] = STORAGE_DRIVERS,
                 timeout: float = 60.0) -> tuple[subprocess.Popen[bytes], str]:
    """dockerd under ``root``, answering, with the first storage driver of ``drivers`` that
    it accepts (overlay2 needs a data root that is not itself on overlayfs; vfs always
    works but copies the whole image for every layer and container)."""
    root.mkdir(parents=True, exist_ok=True)
    failures = []
    for driver in drivers:
        log = root / f"dockerd-{driver}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(dockerd_argv(root, driver), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.2) + 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            if daemon_ready(root):
                return proc, driver
            time.sleep(0.2)
        stop_daemon(proc, root, remove=False)
        lines = log.read_text(errors="replace").strip().splitlines()
        failures.append(f"{driver}: {lines[-1] if lines else 'no output'}")
    raise DockerLabError(f"dockerd did not start ({'; '.join(failures)}); logs in {root}")


def stop_daemon(proc: subprocess.Popen[bytes], root: Path, timeout: float = 60.0,
                remove: bool = True) -> list[str]:
    """SIGTERM dockerd by PID (it stops its containers and containerd), SIGKILL after
    ``timeout``; then :func:`clear` and, with ``remove``, delete ``root``."""
    done = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10.0)
            done.append(f"dockerd {proc.pid} killed after {timeout:.0f}s")
    done += clear(root, sid=proc.pid)
    if remove:
        shutil.rmtree(root, ignore_errors=True)
    return done


def cmd_daemon(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise DockerLabError("dockerd needs root")
    root: Path = args.root
    if root.exists():
        raise DockerLabError(f"{root} exists: another daemon's? remove it first")
    dirs_before = host_dirs()
    proc, driver = start_daemon(root)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            # SIGINT too: a shell starts background jobs with SIGINT ignored.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            print(f"dockerd {proc.pid} ready (storage driver {driver}); in another shell:\n"
                  f"  export DOCKER_HOST={docker_host(root)}\n"
                  f"Ctrl-C (or SIGTERM) stops it and removes {root}", flush=True)
            proc.wait()
    finally:
        for line in stop_daemon(proc, root):
            print(line)
        remove_host_dirs(dirs_before)
        print(f"dockerd stopped, {root} removed")
    return 0


def cmd_base(args: argparse.Namespace) -> int:
    notes: list[str] = []
    key = build_base(args.tag, args.cache, log=notes)
    for line in notes:
        print(line)
    print(f"{args.tag} ready (recipe {key}); now: docker-compose up -d --build")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("base", help=f"build and import {BASE_TAG} (mmdebstrap + pip wheels)")
    b.add_argument("--tag", default=BASE_TAG)
    b.add_argument("--cache", type=Path, help="keep the tarball here and reuse it")
    d = sub.add_parser("daemon", help="run a private dockerd until Ctrl-C (root)")
    d.add_argument("--root", type=Path, default=Path("/var/tmp/swimlib-docker"))
    args = parser.parse_args(argv)
    try:
        return int(cmd_base(args) if args.command == "base" else cmd_daemon(args))
    except DockerLabError as exc:
        print(f"docker_lab: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
