#!/usr/bin/env python3
"""Generate the protobuf Python modules and type stubs from protos/*.proto.

Usage (from anywhere; paths are relative to the repository root):

    python3 scripts/gen_protos.py          # regenerate src/hoymiles_bridge/protocol/pb/
    python3 scripts/gen_protos.py --check  # verify the committed files are up to date

The generator runs in a dedicated virtual environment at .cache/protogen with
exactly pinned tool versions, so every machine produces byte-identical output.
The environment is (re)built when it is missing or when the pins below change.
Standard library only.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

# Exact tool pins. grpcio-tools 1.76.0 bundles the protoc that writes
# "Protobuf Python Version: 6.31.1" gencode, so the runtime needs protobuf>=6.31.1,<7.
GRPCIO_TOOLS_VERSION = "1.76.0"
GRPCIO_VERSION = "1.76.0"
PROTOBUF_VERSION = "6.31.1"
MYPY_PROTOBUF_VERSION = "3.6.0"
TYPES_PROTOBUF_VERSION = "6.30.2.20250914"
TYPING_EXTENSIONS_VERSION = "4.16.0"  # transitive (grpcio); pinned for a reproducible venv

PINS = (
    f"grpcio-tools=={GRPCIO_TOOLS_VERSION}",
    f"grpcio=={GRPCIO_VERSION}",
    f"protobuf=={PROTOBUF_VERSION}",
    f"mypy-protobuf=={MYPY_PROTOBUF_VERSION}",
    f"types-protobuf=={TYPES_PROTOBUF_VERSION}",
    f"typing-extensions=={TYPING_EXTENSIONS_VERSION}",
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = REPO_ROOT / "protos"
OUT_DIR = REPO_ROOT / "src" / "hoymiles_bridge" / "protocol" / "pb"
VENV_DIR = REPO_ROOT / ".cache" / "protogen"
STAMP = VENV_DIR / "pins.txt"

# Hand-written file in OUT_DIR; never generated, ignored by --check.
INIT_FILE = "__init__.py"
INIT_TEXT = (
    '"""Generated protobuf modules — do not edit; regenerate with scripts/gen_protos.py."""\n'
)
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi")


def _venv_bin(name: str) -> Path:
    sub = "Scripts" if sys.platform == "win32" else "bin"
    suffix = ".exe" if sys.platform == "win32" else ""
    return VENV_DIR / sub / f"{name}{suffix}"


def ensure_venv() -> Path:
    """Create or reuse the generator venv; return its Python interpreter."""
    python = _venv_bin("python")
    wanted = "\n".join(PINS) + "\n"
    if python.exists() and STAMP.exists() and STAMP.read_text(encoding="utf-8") == wanted:
        return python
    if VENV_DIR.exists():
        shutil.rmtree(VENV_DIR)
    print(f"creating generator venv in {VENV_DIR.relative_to(REPO_ROOT)}", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV_DIR)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
        check=True,
    )
    STAMP.write_text(wanted, encoding="utf-8")
    return python


def generate(python: Path, out: Path) -> None:
    """Run protoc with the python and mypy plugins into `out`."""
    protos = sorted(p.relative_to(REPO_ROOT).as_posix() for p in PROTO_DIR.glob("*.proto"))
    if not protos:
        sys.exit(f"no .proto files in {PROTO_DIR}")
    plugin = _venv_bin("protoc-gen-mypy")
    cmd = [
        str(python),
        "-m",
        "grpc_tools.protoc",
        "-I",
        PROTO_DIR.relative_to(REPO_ROOT).as_posix(),
        f"--plugin=protoc-gen-mypy={plugin}",
        f"--python_out={out}",
        f"--mypy_out={out}",
        *protos,
    ]
    # mypy-protobuf chats on stderr ("Writing mypy to ..."); keep it quiet unless protoc fails.
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit(f"protoc failed with exit code {result.returncode}")


def generated_files(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return {
        p.name: p
        for p in directory.iterdir()
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    }


def write_outputs(tmp: Path) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    new = generated_files(tmp)
    for name, old_path in generated_files(OUT_DIR).items():
        if name not in new:
            old_path.unlink()
            print(f"removed   {name}")
    for name in sorted(new):
        shutil.copyfile(new[name], OUT_DIR / name)
    init = OUT_DIR / INIT_FILE
    if not init.exists():
        init.write_text(INIT_TEXT, encoding="utf-8")
    print(f"generated {len(new)} files in {OUT_DIR.relative_to(REPO_ROOT)}")


def check_outputs(tmp: Path) -> int:
    new = generated_files(tmp)
    old = generated_files(OUT_DIR)
    problems = 0
    for name in sorted(set(new) | set(old)):
        if name not in old:
            status = "missing (not committed)"
        elif name not in new:
            status = "extra (no longer generated)"
        else:
            a = old[name].read_bytes()
            b = new[name].read_bytes()
            if a == b:
                continue
            diff = difflib.unified_diff(
                a.decode("utf-8", "replace").splitlines(),
                b.decode("utf-8", "replace").splitlines(),
                lineterm="",
                n=0,
            )
            changed = sum(
                1 for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))
            )
            status = f"differs ({changed} changed lines)"
        problems += 1
        print(f"FAIL      {name}: {status}")
    if problems:
        print(f"{problems} file(s) out of date; run: python3 scripts/gen_protos.py")
        return 1
    print("generated protobuf modules are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="generate into a temporary directory and compare with the committed files",
    )
    args = parser.parse_args(argv)
    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmpdir:
        tmp = Path(tmpdir)
        generate(python, tmp)
        if args.check:
            return check_outputs(tmp)
        write_outputs(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
