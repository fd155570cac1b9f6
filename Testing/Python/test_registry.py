"""The model registry against a real HTTP server on loopback: good, corrupt, partial, offline, 404, import."""
from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from LowLightDenoiseLib import registry
from LowLightDenoiseLib.errors import DownloadError, InputError, ModelNotAvailableError
from LowLightDenoiseLib.methods import get_method, load_model
from LowLightDenoiseLib.methods.learned import LearnedMethod
from LowLightDenoiseLib.models.spec import ModelSpec, save_weights

torch.set_num_threads(1)

NAME = "tiny-dncnn"


class Server:
    """A loopback HTTP server; ``routes[path] = (body, mode)`` with mode ``ok``, ``short``, ``short-once``,
    ``trickle`` (a byte every 0.2 s) or ``stall`` (headers, then nothing)."""

    def __init__(self):
        self.closed = False
        self.routes = {}
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                if self.path not in outer.routes:
                    self.send_error(404, "Not Found")
                    return
                body, mode = outer.routes[self.path]
                short = mode == "short" or (mode == "short-once" and outer.requests.count(self.path) == 1)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode in ("trickle", "stall"):  # one byte every 0.2 s, or nothing after the headers
                    for i in range(len(body) if mode == "trickle" else 0):
                        if outer.closed:
                            return
                        try:
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(0.2)
                    while not outer.closed:
                        time.sleep(0.05)
                    return
                self.wfile.write(body[: len(body) // 2] if short else body)
                if short:
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.closed = True
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny random-initialised DnCNN saved as safetensors: (bytes, spec)."""
    spec = ModelSpec(name=NAME, architecture="dncnn", spatial_dims=2, network={"features": 4, "depth": 3},
                     input={"noise_map": True})
    torch.manual_seed(0)
    path = save_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", spec.build_network(), spec)
    return path.read_bytes(), spec


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Isolated cache, no models folder, no bundled files."""
    monkeypatch.setenv(registry.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(registry.ENV_MODELS_DIR, raising=False)
    monkeypatch.delenv(registry.ENV_REGISTRY, raising=False)
    monkeypatch.setattr(registry, "BUNDLED_DIR", tmp_path / "bundled")
    return tmp_path


def write_registry(folder: Path, body: bytes, spec: ModelSpec, url: str = "", **overrides) -> Path:
    entry = {"name": spec.name, "version": "0.1", "title": "tiny test model", "category": "denoise",
             "spatial_dims": spec.spatial_dims, "modalities": ["CT"], "architecture": spec.architecture,
             "network": spec.network, "input": spec.input, "file": "tiny-dncnn-0.1.safetensors", "url": url,
             "sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "licence": "Apache-2.0",
             "training": {"data": "none: random weights for tests"}, "metrics": {}, "model_card": ""}
    entry.update(overrides)
    path = folder / "Models.json"
    path.write_text(json.dumps({"schema_version": 1, "models": [entry]}))
    return path


def cache_files(env):
    folder = env / "cache"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_good_download_is_verified_and_moved_into_place(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "ok")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    assert not registry.installed(NAME, reg)
    seen = []
    path = registry.download_model(NAME, lambda f, m: seen.append(f), registry=reg)
    assert path.read_bytes() == body and path.parent == env / "cache"
    assert cache_files(env) == ["tiny-dncnn-0.1.safetensors"]
    assert seen and seen[-1] == 1.0 and all(b >= a for a, b in zip(seen, seen[1:]))
    assert registry.installed(NAME, reg) and registry.verify_model(NAME, reg).source == "cache"
    registry.download_model(NAME, registry=reg)  # already valid: no second request
    assert server.requests == ["/tiny.safetensors"]


def test_wrong_checksum_is_an_error_and_leaves_no_file(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (bytes(len(body)), "ok")  # right size, wrong content
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    with pytest.raises(DownloadError, match="sha256"):
        registry.download_model(NAME, registry=reg)
    assert cache_files(env) == []


def test_partial_transfer_is_detected_and_retried(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "short-once")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    path = registry.download_model(NAME, registry=reg)
    assert path.read_bytes() == body and len(server.requests) == 2


def test_transfer_that_always_stops_early_fails_cleanly(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "short")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    with pytest.raises(DownloadError, match="stopping early"):
        registry.download_model(NAME, registry=reg, retries=1)
    assert len(server.requests) == 2 and cache_files(env) == []


def test_corrupt_cached_file_is_fetched_again(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "ok")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    (env / "cache").mkdir()
    bad = env / "cache" / "tiny-dncnn-0.1.safetensors"
    bad.write_bytes(body[:-10] + b"0123456789")
    assert not registry.installed(NAME, reg)
    assert "does not match" in registry.verify_model(NAME, reg).message
    registry.download_model(NAME, registry=reg)
    assert bad.read_bytes() == body and registry.installed(NAME, reg)


def test_offline_gives_one_sentence_that_says_how_to_import(weights, env):
    body, spec = weights
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    reg = write_registry(env, body, spec, f"http://127.0.0.1:{port}/tiny.safetensors")
    with pytest.raises(DownloadError) as info:
        registry.download_model(NAME, registry=reg, timeout=5)
    message = str(info.value)
    assert "offline" in message and f"lowlightdenoise models import {NAME} FILE" in message
    assert registry.ENV_MODELS_DIR in message and "\n" not in message
    assert cache_files(env) == []


def test_http_404_is_reported(server, weights, env):
    body, spec = weights
    reg = write_registry(env, body, spec, server.url("/missing.safetensors"))
    with pytest.raises(DownloadError, match="HTTP 404"):
        registry.download_model(NAME, registry=reg)
    assert cache_files(env) == []


def test_import_from_a_local_file(weights, env):
    body, spec = weights
    reg = write_registry(env, body, spec)
    good = env / "downloaded-elsewhere.safetensors"
    good.write_bytes(body)
    wrong = env / "other.safetensors"
    wrong.write_bytes(body[::-1])
    with pytest.raises(InputError, match="is not the weights"):
        registry.import_model(NAME, wrong, registry=reg)
    assert cache_files(env) == []
    path = registry.import_model(NAME, good, registry=reg)
    assert path.read_bytes() == body and registry.installed(NAME, reg)
    assert cache_files(env) == ["tiny-dncnn-0.1.safetensors"]


def test_models_folder_from_the_environment_is_used_first(weights, env, monkeypatch, ct_path):
    import SimpleITK as sitk

    from LowLightDenoiseLib.pipeline import denoise_volume
    from LowLightDenoiseLib.volume import Volume

    body, spec = weights
    reg = write_registry(env, body, spec)
    with pytest.raises(ModelNotAvailableError, match="models import"):
        load_model(NAME, registry=reg, download=False)
    with pytest.raises(ModelNotAvailableError, match="no download address"):
        load_model(NAME, registry=reg)
    folder = env / "shared-models"
    folder.mkdir()
    (folder / "tiny-dncnn-0.1.safetensors").write_bytes(body)
    monkeypatch.setenv(registry.ENV_MODELS_DIR, str(folder))
    monkeypatch.setenv(registry.ENV_REGISTRY, str(reg))
    assert registry.verify_model(NAME).source == "models-dir"
    method = get_method(NAME, device="cpu")  # through the one interface, registry from the env var
    assert isinstance(method, LearnedMethod) and method.spec.input["noise_map"] is True
    img = sitk.ReadImage(str(ct_path))
    vol = Volume(sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin(), img.GetDirection())
    out = denoise_volume(vol, method, device="cpu")
    assert out.mode == "2d" and out.volume.array.shape == vol.array.shape
    assert cache_files(env) == []
    row = registry.describe_models()[0]
    assert row["name"] == NAME and row["installed"] and row["kind"] == "learned" and row["spatial_dims"] == [2]


@pytest.mark.parametrize("change, message", [
    ({"sha256": "abc"}, "invalid sha256"),
    ({"size": 0}, "invalid size"),
    ({"file": "../x.safetensors"}, "plain file name"),
    ({"file": ""}, "plain file name"),
    ({"file": ".."}, "plain file name"),
    ({"file": "."}, "plain file name"),
    ({"file": ".hidden.safetensors"}, "plain file name"),
    ({"spatial_dims": 4}, "spatial_dims"),
    ({"input": {"vst": "yes"}}, "true or false"),
    ({"colour": "red"}, "unknown field"),
])
def test_invalid_registry_entries_are_one_sentence_errors(weights, env, change, message):
    body, spec = weights
    reg = write_registry(env, body, spec, **change)
    with pytest.raises(InputError, match=message):
        registry.load_registry(reg)


def test_the_shipped_registry_is_valid():
    data = json.loads(registry.DEFAULT_REGISTRY.read_text())
    assert data["schema_version"] == registry.SCHEMA_VERSION
    entries = registry.load_registry(registry.DEFAULT_REGISTRY)
    assert set(entries) == {m["name"] for m in data["models"]}


def test_registry_errors(env, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        registry.load_registry(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        registry.load_registry(tmp_path / "bad.json")
    (tmp_path / "v2.json").write_text(json.dumps({"schema_version": 2, "models": []}))
    with pytest.raises(InputError, match="schema_version"):
        registry.load_registry(tmp_path / "v2.json")
    (tmp_path / "empty.json").write_text(json.dumps({"schema_version": 1, "models": []}))
    with pytest.raises(ModelNotAvailableError, match="No model called 'x'"):
        registry.get_entry("x", tmp_path / "empty.json")


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.ENV_CACHE, str(tmp_path / "c"))
    assert registry.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(registry.ENV_CACHE)
    assert "lowlightdenoise" in str(registry.cache_dir()).lower()
    monkeypatch.setenv(registry.ENV_MODELS_DIR, str(tmp_path / "m"))
    assert [s for s, _ in registry.search_dirs()] == ["models-dir", "bundled", "cache"]


# ------------------------------------------------------------------------------- issue 17: downloads, imports, wording

def test_a_download_that_trickles_ends_at_its_deadline_with_the_offline_route(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "trickle")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as info:
        registry.download_model(NAME, registry=reg, timeout=5, deadline=1.5)
    assert time.monotonic() - t0 < 6
    message = str(info.value)
    assert "too slow" in message and "within 1.5 s" in message and f"models import {NAME} FILE" in message
    assert cache_files(env) == []


def test_a_download_that_stalls_ends_after_the_stall_timeout(server, weights, env):
    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "stall")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match="stalled: nothing arrived for 0.5 s after 0 of") as info:
        registry.download_model(NAME, registry=reg, timeout=0.5)
    assert time.monotonic() - t0 < 5 and "models import" in str(info.value)
    assert cache_files(env) == []


def test_the_partial_download_of_a_killed_process_is_swept(server, weights, env):
    import subprocess
    import sys

    from LowLightDenoiseLib import files

    body, spec = weights
    server.routes["/tiny.safetensors"] = (body, "ok")
    reg = write_registry(env, body, spec, server.url("/tiny.safetensors"))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that no longer runs: what SIGKILL leaves is its .part
    (env / "cache").mkdir()
    part = env / "cache" / f".tiny-dncnn-0.1.safetensors.{files._HOST}.{gone.pid}.k1ll3d.part"
    part.write_bytes(body[:100])
    registry.download_model(NAME, registry=reg)
    assert cache_files(env) == ["tiny-dncnn-0.1.safetensors"]


def test_import_installs_what_it_copied_even_if_the_source_changes_meanwhile(weights, env, monkeypatch):
    """The source is rewritten (same size, other bytes) right after it was first read to its end."""
    import builtins

    body, spec = weights
    reg = write_registry(env, body, spec)
    source = env / "w.safetensors"
    source.write_bytes(body)
    real_open = builtins.open
    rewritten = []

    class Reader:
        def __init__(self, fh):
            self.fh = fh

        def read(self, *args):
            data = self.fh.read(*args)
            if not data and not rewritten:
                rewritten.append(True)
                with real_open(source, "wb") as other:
                    other.write(bytes(len(body)))  # the racing rewrite
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def watched_open(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        return Reader(fh) if str(path) == str(source) and "r" in mode else fh

    monkeypatch.setattr(builtins, "open", watched_open)
    try:
        installed = registry.import_model(NAME, source, registry=reg)
    except InputError:
        installed = None
    monkeypatch.setattr(builtins, "open", real_open)
    assert rewritten  # the race happened
    if installed is not None:  # whatever was installed is the registered file, never the rewrite
        assert installed.read_bytes() == body and registry.installed(NAME, reg)
    else:
        assert cache_files(env) == []


def test_import_and_load_say_what_is_wrong_with_the_file(weights, env, tmp_path):
    body, spec = weights
    reg = write_registry(env, body, spec)
    with pytest.raises(InputError, match="is a folder; give the weights file itself"):
        registry.import_model(NAME, tmp_path, registry=reg)
    with pytest.raises(InputError, match="not a regular file"):
        registry.import_model(NAME, "/dev/zero", registry=reg)
    with pytest.raises(InputError, match="does not exist"):
        registry.import_model(NAME, tmp_path / "nope.safetensors", registry=reg)
    (env / "cache").mkdir()
    (env / "cache" / "tiny-dncnn-0.1.safetensors").write_bytes(body[::-1])  # a wrong copy, no address
    with pytest.raises(ModelNotAvailableError) as info:
        load_model(NAME, registry=reg)
    message = str(info.value)
    assert "does not match the registry's size and sha256" in message and "no download address" in message
    assert str(env / "cache" / "tiny-dncnn-0.1.safetensors") in message and "models import" in message
