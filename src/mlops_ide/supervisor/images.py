"""Builds our images for real with a local container engine (podman, runc), no registry.

    python -m mlops_ide.supervisor.images build [NAME...]    the images on the Python base (default: all four)
    python -m mlops_ide.supervisor.images stand-in-base      only the stand-in base
    python -m mlops_ide.supervisor.images list               what can be built here, and what cannot and why

No base image can be pulled here, so the images whose `FROM` is the official Python image
are built on a stand-in made from Debian's packages (images/engine/stand-in-base.sh), tagged
under the official name inside our engine only and never pushed. The engine reads our
configuration (images/engine/containers.conf, storage.conf), not the machine's; its layers
stay between runs, so a second build of an unchanged image costs seconds. docs/containers.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ENGINE = ROOT / "images" / "engine"

# Lightest first: the hub and the app; serving and pipeline share their PyTorch layer.
BUILDABLE = ("hub", "app", "serving", "pipeline")
NOT_BUILDABLE = {
    "singleuser": "stands on docker-stacks' base-notebook (Ubuntu 24.04, conda's Python 3.13): no stand-in "
    "of Debian's packages has its layout (conda, jovyan, start scripts), and its build downloads "
    "code-server and extensions from GitHub and Open VSX, out of reach here",
    "airflow": "stands on the official apache/airflow image (its own Python, user 50000, entrypoint): "
    "no registry here, and a stand-in would test our stand-in rather than Airflow's image",
}

STAND_IN_REPOSITORY = "localhost/mlops-ide-stand-in-python"
STAND_IN_PACKAGES = ("ca-certificates", "netbase", "tzdata", "python3.11", "python3.11-venv", "python3-pip")
STAND_IN_SUITE = "bookworm"
STAND_IN_MIRROR = "http://deb.debian.org/debian"
STAND_IN_PYTHON_BASE = "python:3.11"  # the FROMs the stand-in answers for
RECIPE_LABEL = "io.mlops-ide.stand-in-recipe"
# What the official image sets, and ours honestly (Debian's Python is 3.11.2).
STAND_IN_CONFIG = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PYTHON_VERSION=3.11.2",
    'CMD ["python3"]',
)
WHEELS_MOUNT = "/wheels"


class ImagesError(Exception):
    """A problem for the person at the keyboard: what is wrong and what to do."""


def engine_env() -> dict[str, str]:
    """The environment podman runs in: our configuration instead of the machine's."""
    return {
        **os.environ,
        "CONTAINERS_CONF": str(ENGINE / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(ENGINE / "storage.conf"),
    }


def find_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ImagesError(
            f"`{name}` is missing: run `make images` (or `bash scripts/install.sh images`, which installs "
            "Debian's podman, runc and mmdebstrap)"
        )
    return found


def podman(*args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    """Runs podman with our configuration; as root only (see images/engine/storage.conf)."""
    if os.geteuid() != 0:
        raise ImagesError("the images' engine runs as root only: run `make images` as root")
    return subprocess.run(
        [find_tool("podman"), *args], env=engine_env(), check=check, capture_output=capture, text=True
    )


def image_label(reference: str, label: str) -> str | None:
    """A label of a local image, or None when there is no such image."""
    shown = podman(
        "image",
        "inspect",
        "--format",
        f'{{{{index .Labels "{label}"}}}}',
        reference,
        capture=True,
        check=False,
    )
    return shown.stdout.strip() if shown.returncode == 0 else None


def image_exists(reference: str) -> bool:
    return podman("image", "exists", reference, check=False).returncode == 0


def image_size(reference: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", reference, capture=True).stdout.strip())


def bases_of(dockerfile: Path) -> list[str]:
    """The images a Dockerfile's FROM lines name (without `--platform=`, and `AS` names)."""
    bases = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            names = [word for word in words[1:] if not word.startswith("--")]
            bases.append(names[0])
    return bases


def dockerfile_of(name: str) -> Path:
    return ROOT / "images" / name / "Dockerfile"


def tag_of(name: str) -> str:
    return f"localhost/mlops-ide-{name}:local"


def official_name(base: str) -> str:
    """The name podman resolves a short FROM to: `python:3.11` is docker.io/library/python:3.11."""
    first = base.split("/")[0]
    if "/" not in base:
        return f"docker.io/library/{base}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{base}"
    return base


def stand_in_recipe() -> str:
    """A hash of what the stand-in is made of: packages, suite, hook, config, trusted CAs."""
    recipe = hashlib.sha256()
    for part in (STAND_IN_SUITE, STAND_IN_MIRROR, *STAND_IN_PACKAGES, *STAND_IN_CONFIG):
        recipe.update(part.encode() + b"\0")
    recipe.update((ENGINE / "stand-in-base.sh").read_bytes())
    for ca in sorted(Path("/usr/local/share/ca-certificates").glob("*.crt")):
        recipe.update(ca.read_bytes())
    return recipe.hexdigest()[:12]


def python_bases() -> list[str]:
    """The official Python images our buildable Dockerfiles name."""
    names = {base for image in BUILDABLE for base in bases_of(dockerfile_of(image))}
    return sorted(name for name in names if name.startswith(STAND_IN_PYTHON_BASE))


def build_stand_in_base() -> str:
    """Makes the stand-in once per recipe and tags it under the official names; returns its tag."""
    recipe = stand_in_recipe()
    tag = f"{STAND_IN_REPOSITORY}:{recipe}"
    if image_label(tag, RECIPE_LABEL) == recipe:
        log(f"stand-in base {tag}: up to date")
    else:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mlops-ide-stand-in-") as work:
            rootfs = Path(work) / "rootfs.tar"
            subprocess.run(
                [
                    find_tool("mmdebstrap"),
                    "--quiet",
                    "--variant=apt",
                    f"--include={','.join(STAND_IN_PACKAGES)}",
                    f'--customize-hook=sh {ENGINE / "stand-in-base.sh"} "$1"',
                    STAND_IN_SUITE,
                    str(rootfs),
                    STAND_IN_MIRROR,
                ],
                check=True,
            )
            changes = [
                arg
                for change in (*STAND_IN_CONFIG, f"LABEL {RECIPE_LABEL}={recipe}")
                for arg in ("--change", change)
            ]
            podman("import", "--quiet", *changes, str(rootfs), tag, capture=True)
        seconds, megabytes = time.monotonic() - started, image_size(tag) / 1e6
        log(f"stand-in base {tag}: built in {seconds:.0f} s ({megabytes:.0f} MB)")
        remove_other_stand_ins(tag)
    for base in python_bases():
        podman("tag", tag, official_name(base))
        log(f"stand-in base tagged {official_name(base)} (in this engine only)")
    return tag


def remove_other_stand_ins(kept: str) -> None:
    """Earlier recipes' stand-ins go (their layers stay while an image still stands on them)."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", STAND_IN_REPOSITORY, capture=True)
    # the listing also names other tags of the same image (the official names): keep those
    ours = {line for line in listed.stdout.split() if line.startswith(f"{STAND_IN_REPOSITORY}:")}
    for reference in ours - {kept}:
        podman("rmi", reference, capture=True, check=False)


def wheels_folder() -> Path | None:
    """The host's own wheel folder (PIP_FIND_LINKS, when a local folder), mounted into builds."""
    links = os.environ.get("PIP_FIND_LINKS", "").split()
    folders = [Path(link) for link in links if Path(link).is_dir()]
    return folders[0] if folders else None


def build_command(name: str, wheels: Path | None) -> list[str]:
    """`podman build` for images/<name>/Dockerfile with the repository as context (as CI)."""
    command = ["build", "--pull=never", "--layers", "-f", str(dockerfile_of(name)), "-t", tag_of(name)]
    if wheels is not None:
        command += ["--volume", f"{wheels}:{WHEELS_MOUNT}:ro"]
    return [*command, str(ROOT)]


def build(names: list[str]) -> None:
    unknown = [name for name in names if name not in BUILDABLE]
    for name in unknown:
        reason = NOT_BUILDABLE.get(name, f"no such image (images/{name}/Dockerfile)")
        raise ImagesError(f"`{name}` cannot be built here: {reason}")
    build_stand_in_base()
    wheels = wheels_folder()
    for name in names:
        started = time.monotonic()
        log(f"building {tag_of(name)} from images/{name}/Dockerfile")
        podman(*build_command(name, wheels))
        log(f"{tag_of(name)}: {time.monotonic() - started:.0f} s, {image_size(tag_of(name)) / 1e6:.0f} MB")


def log(line: str) -> None:
    print(f"mlops-ide images: {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["build"]:
            build(args[1:] or list(BUILDABLE))
        elif args == ["stand-in-base"]:
            build_stand_in_base()
        elif args == ["list"]:
            for name in BUILDABLE:
                print(f"{name:<11} {tag_of(name)}")
            for name, reason in NOT_BUILDABLE.items():
                print(f"{name:<11} not here: {reason}")
        else:
            print(
                "usage: python -m mlops_ide.supervisor.images build [NAME...] | stand-in-base | list",
                file=sys.stderr,
            )
            return 2
    except ImagesError as problem:
        print(f"mlops-ide images: {problem}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as failed:
        print(
            f"mlops-ide images: `{' '.join(failed.cmd[:3])} …` failed (exit {failed.returncode})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
