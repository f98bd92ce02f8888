"""`genforge data get` against a local HTTP server (no network needed)."""
import functools
import hashlib
import http.server
import threading

import pytest

from genforge.data import download


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_download_verifies_checksum(server, tmp_path, monkeypatch):
    root, url = server
    body = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    (root / "input.txt").write_bytes(body)
    good = download.Remote("https://example.invalid/input.txt", hashlib.sha256(body).hexdigest())
    monkeypatch.setitem(download.DATASETS, "shakespeare", [good])
    folder = download.get("shakespeare", directory=tmp_path / "dl", mirror=url, progress=False)
    assert (folder / "input.txt").read_bytes() == body
    # a second call finds the verified file and fetches nothing
    (root / "input.txt").unlink()
    assert download.get("shakespeare", directory=tmp_path / "dl", mirror=url, progress=False) == folder


def test_bad_checksum_keeps_nothing(server, tmp_path, monkeypatch):
    root, url = server
    (root / "input.txt").write_bytes(b"tampered")
    monkeypatch.setitem(download.DATASETS, "shakespeare", [download.Remote("https://x/input.txt", "0" * 64)])
    with pytest.raises(download.ChecksumError, match="sha256 mismatch"):
        download.get("shakespeare", directory=tmp_path / "dl", mirror=url, progress=False)
    assert list((tmp_path / "dl").iterdir()) == []


def test_real_shakespeare_through_local_mirror(server, tmp_path, datasets):
    """The registered checksum matches the real file (served from $GENFORGE_DATASETS)."""
    root, url = server
    (root / "input.txt").write_bytes((datasets / "tinyshakespeare" / "input.txt").read_bytes())
    folder = download.get("shakespeare", directory=tmp_path / "dl", mirror=url, progress=False)
    assert (folder / "input.txt").stat().st_size == 1115394


def test_unknown_dataset():
    with pytest.raises(ValueError, match="did you mean 'mnist'"):
        download.get("mnsit")


def test_real_mnist_through_local_mirror_and_cli(server, tmp_path, datasets, capsys):
    """`genforge data get mnist`: the registered checksums match the real files."""
    from genforge.cli import main
    root, url = server
    for remote in download.DATASETS["mnist"]:
        (root / remote.filename).write_bytes((datasets / "mnist" / remote.filename).read_bytes())
    assert main(["data", "get", "mnist", "--dir", str(tmp_path / "dl"), "--mirror", url]) == 0
    assert "mnist is in" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == sorted(r.filename for r in download.DATASETS["mnist"])
