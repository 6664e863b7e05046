"""`make gpu-wheels`: the wheels a bare GPU machine lacks, for Python 3.12 on manylinux x86-64.

    .venv/bin/python bench/gpu_wheels.py [--dest .whl] [--dry-run]
    python3 bench/gpu_wheels.py --missing [--dest .whl]     (on the GPU machine: what to install)

The GPU machines this project borrows (/work/.library/device/KINDS.md) have Python 3.12 with
torch, numpy, pandas, scipy, scikit-learn, jinja2, pyyaml, tqdm, safetensors, pytest... but not
ART, Optuna or pydantic, and they reach no package registry. This walks advrun's requirements
(and the ``bench`` extra: torchattacks, the original AutoAttack) through the installed
metadata of this virtual environment, keeps every package the GPU machine does not have, pins
each at the version installed here (the bench references at their pins in pyproject.toml when
they are not installed) and downloads one wheel of each into ``--dest`` (git-ignored), built
for CPython 3.12 on manylinux x86-64 or pure Python. Never torch. One version per package: an
older wheel of the same package is removed.

pyautoattack 0.2.0's wheel carries 45 MB of example weights (``pyautoattack/examples/``) that
the check never loads and that would not fit the 64 MiB a GPU call may carry: the wheel is
repacked without that folder (its RECORD rewritten to match), nothing else changed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]

# The GPU image's Python packages as KINDS.md lists them (read there on 2026-11-17): not carried
_GPU_IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cycler
cython einops filelock flatbuffers fonttools fsspec grpcio h11 h5py httpcore httpx huggingface-hub
idna imageio iniconfig jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities llvmlite
lxml markdown markdown-it-py markupsafe matplotlib mdurl mpmath msgpack multidict networkx ninja
numba numpy opencv-python-headless packaging pandas pathspec patsy pillow pip pluggy portalocker
protobuf psutil pyarrow pybind11 pygments pyparsing pytest pytest-timeout pytest-xdist
python-dateutil pyyaml regex requests rich safetensors scikit-image scikit-learn scipy setuptools
six sympy tabulate threadpoolctl tifffile timm tokenizers toolz torch torchaudio torchvision tqdm
triton typer typing-inspect urllib3 werkzeug wheel wrapt xxhash yarl zipp
"""
GPU_HAS = frozenset(canonicalize_name(n) for n in _GPU_IMAGE.split())
# Carried although the image has one: pydantic-core needs typing-extensions >= 4.16, and the
# image's version was never read
ALWAYS = frozenset({"typing-extensions"})
NEVER = frozenset({"torch", "torchvision", "torchaudio", "triton"})
# The bench references when pyproject.toml's bench extra does not pin them (or is not installed)
BENCH_PINS = {"torchattacks": "3.5.1", "pyautoattack": "0.2.0"}
NO_DEPS = frozenset({"torchattacks", "pyautoattack"})  # torchattacks' torchvision is not used
SLIM = {"pyautoattack": "pyautoattack/examples/"}  # folders dropped from a wheel (see above)
PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
            "--abi", "cp312", "--abi", "abi3", "--abi", "none"] + [
    arg for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                    "manylinux2014_x86_64", "manylinux1_x86_64", "any")
    for arg in ("--platform", tag)
]  # fmt: skip
TARGET_ENV = default_environment() | {
    "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
}  # fmt: skip


def _applies(req: Requirement, extra: str = "") -> bool:
    return req.marker is None or req.marker.evaluate(TARGET_ENV | {"extra": extra})


def bench_pins() -> dict[str, str]:
    """torchattacks / pyautoattack at the versions pyproject.toml's ``bench`` extra pins."""
    pins = dict(BENCH_PINS)
    for text in md.requires("advrun") or []:
        req = Requirement(text)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if req.marker is not None and _applies(req, "bench") and not _applies(req) and exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


def closure() -> dict[str, str]:
    """name -> version of every package advrun and the bench need that the GPU lacks."""
    pins = bench_pins()
    wanted: dict[str, str] = {}
    todo = [Requirement(r) for r in md.requires("advrun") or [] if _applies(Requirement(r))]
    todo += [Requirement(f"{name}=={version}") for name, version in pins.items()]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in NEVER or name in wanted or (name in GPU_HAS and name not in ALWAYS):
            continue
        try:
            wanted[name] = md.version(name)
        except md.PackageNotFoundError:
            if name not in pins:
                sys.exit(f"gpu-wheels: {name} is not installed here; run `make install` first")
            wanted[name] = pins[name]
            continue  # a bench reference: installed with --no-deps
        if name not in NO_DEPS:
            todo += [Requirement(r) for r in md.requires(name) or [] if _applies(Requirement(r))]
    return dict(sorted(wanted.items()))


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def slim(wheel: Path, drop: str) -> None:
    """Rewrite ``wheel`` without the files under ``drop``, its RECORD updated."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        kept = [i for i in src.infolist() if not i.filename.startswith(drop)]
        record = next(i.filename for i in kept if i.filename.endswith(".dist-info/RECORD"))
        lines = []
        for info in kept:
            if info.filename != record:
                data = src.read(info)
                out.writestr(info, data)
                lines.append(_record_line(info.filename, data))
        out.writestr(record, "\n".join([*lines, f"{record},,"]) + "\n")
    tmp.replace(wheel)


def download(name: str, version: str, dest: Path) -> Path:
    """The one wheel of ``name==version`` in ``dest`` (other versions of it removed)."""
    have = {canonicalize_name(parse_wheel_filename(p.name)[0]): p for p in dest.glob("*.whl")}
    old = have.get(name)
    if old is not None and str(parse_wheel_filename(old.name)[1]) == version:
        return old
    if old is not None:
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
           *PLATFORM, "-d", str(dest), f"{name}=={version}"]  # fmt: skip
    subprocess.run(cmd, check=True)
    (got,) = [
        p for p in dest.glob("*.whl") if canonicalize_name(parse_wheel_filename(p.name)[0]) == name
    ]
    if name in SLIM:
        slim(got, SLIM[name])
    return got


def missing(dest: Path) -> list[Path]:
    """The wheels in ``dest`` whose package this Python lacks at that very version."""
    out = []
    for wheel in sorted(dest.glob("*.whl")):
        name, version = parse_wheel_filename(wheel.name)[:2]
        try:
            if md.version(name) == str(version):
                continue
        except md.PackageNotFoundError:
            pass
        out.append(wheel)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", default=str(ROOT / ".whl"))
    ap.add_argument("--dry-run", action="store_true", help="print the pins, download nothing")
    ap.add_argument(
        "--missing",
        action="store_true",
        help="print the wheels of --dest this Python lacks (at their version)",
    )
    args = ap.parse_args()
    if args.missing:
        print("\n".join(str(p) for p in missing(Path(args.dest))))
        return 0
    wanted = closure()
    if args.dry_run:
        print("\n".join(f"{n}=={v}" for n, v in wanted.items()))
        return 0
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for p in dest.glob("*.whl"):  # wheels of packages no longer wanted
        if canonicalize_name(parse_wheel_filename(p.name)[0]) not in wanted:
            p.unlink()
    total = 0
    for name, version in wanted.items():
        wheel = download(name, version, dest)
        total += wheel.stat().st_size
        print(f"{wheel.name:70s} {wheel.stat().st_size / 2**20:6.2f} MiB")
    print(f"{len(wanted)} wheels, {total / 2**20:.1f} MiB in {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
