"""The images compose.yaml builds on and runs: the upstream ones when the engine has or can pull them, else
stand-ins built here from Debian packages (no image registry is reachable on this project's CI machine).

The stand-ins do for this project what the upstream images do (see standins/): a Debian base made with
debootstrap and imported, Python 3.11 with pip in /usr/local, Redis 7.0 with protected mode off, PostgreSQL
with the POSTGRES_* variables honoured. Each carries a label with the digest of what it was built from, so a
cached one is rebuilt only when its Dockerfile, its entrypoint or the host's CA bundle changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.compose.docker_daemon import DockerEngine, apt_install

ROOT = Path(__file__).resolve().parents[2]
STANDINS_DIR = Path(__file__).with_name("standins")
#: The compose override that swaps in the stand-ins (used only by this test).
STANDINS_OVERRIDE = Path(__file__).with_name("compose.standins.yaml")

DEBIAN_SUITE = "bookworm"  # the upstream images' Debian, whose Python is 3.11
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_TAG = f"order-engine-standin/debian:{DEBIAN_SUITE}"
#: The compose services whose upstream image gets a stand-in (the engine's own image is built on the Python one).
SERVERS = ("redis", "postgres")
DIGEST_LABEL = "org.order-engine.standin-digest"
#: The registries are reached through a TLS proxy whose CA only the host's bundle has: builds need it.
HOST_CA_BUNDLE = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class StandIn:
    name: str
    upstream: str  # the image compose.yaml (or the Dockerfile's PYTHON_IMAGE) names
    tag: str  # what compose.standins.yaml names instead

    @property
    def dockerfile(self) -> str:
        return f"{self.name}.Dockerfile"

    @property
    def files(self) -> list[str]:
        """What its build context holds from standins/: the Dockerfile, and its entrypoint if it has one."""
        return [self.dockerfile, *(p.name for p in STANDINS_DIR.glob(f"{self.name}-entrypoint.sh"))]


def upstream_python_image() -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "deploy" / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "deploy/Dockerfile names its base in `ARG PYTHON_IMAGE=…`"
    return match.group(1)


def standins() -> list[StandIn]:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    override = yaml.safe_load(STANDINS_OVERRIDE.read_text())
    python_tag = override["x-standin-build"]["build"]["args"]["PYTHON_IMAGE"]
    servers = [StandIn(name, services[name]["image"], override["services"][name]["image"]) for name in SERVERS]
    return [StandIn("python", upstream_python_image(), python_tag), *servers]


def docker(engine: DockerEngine, *args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], env=engine.env, text=True, timeout=timeout, **kwargs)


def image_label(engine: DockerEngine, ref: str, label: str) -> str | None:
    """The image's label value ('' when it has none), or None when the image is not there."""
    run = docker(engine, "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', ref, capture_output=True)
    if run.returncode != 0:
        return None
    value = run.stdout.strip()
    return "" if value == "<no value>" else value


def present_or_pulled(engine: DockerEngine, ref: str) -> bool:
    if image_label(engine, ref, DIGEST_LABEL) is not None:
        return True
    return docker(engine, "pull", "--quiet", ref, capture_output=True, timeout=300).returncode == 0


def needs_standins(engine: DockerEngine) -> bool:
    """True unless the engine has, or can pull, every upstream image (then the test uses them as they are)."""
    return not all(present_or_pulled(engine, s.upstream) for s in standins())


def ensure_standins(engine: DockerEngine) -> list[str]:
    """Build what is missing or stale; returns what was built (empty when everything came from the cache)."""
    built = []
    if image_label(engine, BASE_TAG, DIGEST_LABEL) is None:
        import_debian_base(engine)
        built.append(BASE_TAG)
    base_id = docker(engine, "image", "inspect", "-f", "{{.Id}}", BASE_TAG, capture_output=True, check=True).stdout
    for standin in standins():
        digest = _digest(standin, base_id.strip())
        if image_label(engine, standin.tag, DIGEST_LABEL) == digest:
            continue
        _build(engine, standin, digest)
        built.append(standin.tag)
    return built


def import_debian_base(engine: DockerEngine) -> None:
    """debootstrap a minimal Debian with python3 into a folder, then import it as an image (~45 s + ~5 s)."""
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    with tempfile.TemporaryDirectory(prefix="oe-rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        print(f"[compose-test] debootstrap {DEBIAN_SUITE} from {DEBIAN_MIRROR} (the stand-ins' base)", flush=True)
        subprocess.run(
            [*sudo, "debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR],
            check=True, stdout=subprocess.DEVNULL, timeout=900,
        )  # fmt: skip
        tar = subprocess.Popen([*sudo, "tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        docker(engine, "import", "--change", f"LABEL {DIGEST_LABEL}=debootstrap", "-", BASE_TAG,
               stdin=tar.stdout, check=True, capture_output=True)  # fmt: skip
        tar.wait()
        subprocess.run([*sudo, "rm", "-rf", str(rootfs)], check=False)


def _digest(standin: StandIn, base_id: str) -> str:
    hashed = hashlib.sha256(base_id.encode())
    for name in standin.files:
        hashed.update((STANDINS_DIR / name).read_bytes())
    hashed.update(HOST_CA_BUNDLE.read_bytes())
    return hashed.hexdigest()[:16]


def _build(engine: DockerEngine, standin: StandIn, digest: str) -> None:
    print(f"[compose-test] building the stand-in {standin.tag} for {standin.upstream}", flush=True)
    with tempfile.TemporaryDirectory(prefix="oe-standin-") as context:
        for name in standin.files:
            shutil.copy2(STANDINS_DIR / name, context)
        shutil.copy(HOST_CA_BUNDLE, Path(context) / "host-ca-bundle.crt")
        run = docker(
            engine, "build", "--network", "host", "--build-arg", f"BASE={BASE_TAG}",
            "--label", f"{DIGEST_LABEL}={digest}", "-f", str(Path(context) / standin.dockerfile), "-t", standin.tag,
            context,
            capture_output=True,
        )  # fmt: skip
        if run.returncode != 0:
            raise RuntimeError(f"building {standin.tag} failed:\n{(run.stdout + run.stderr)[-4000:]}")
