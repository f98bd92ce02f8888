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

def test_imdb_archive_is_fetched_verified_and_unpacked(server, tmp_path, monkeypatch):
    """A small aclImdb-shaped tar.gz goes through download, checksum and extraction."""
    import io
    import tarfile
    root, url = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for split, label, name, text in [("train", "pos", "0_9.txt", "A wonderful film."),
                                         ("train", "neg", "0_2.txt", "Dull.<br />Awful."),
                                         ("test", "pos", "0_10.txt", "Loved it.")]:
            data = text.encode()
            info = tarfile.TarInfo(f"aclImdb/{split}/{label}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    (root / "aclImdb_v1.tar.gz").write_bytes(body)
    real = download.DATASETS["imdb"][0]
    assert real.url.endswith("/aclImdb_v1.tar.gz") and len(real.sha256) == 64 and real.extract == "aclImdb"
    monkeypatch.setitem(download.DATASETS, "imdb", [download.Remote(real.url, hashlib.sha256(body).hexdigest(),
                                                                    extract="aclImdb")])
    folder = download.get("imdb", directory=tmp_path / "dl", mirror=url, progress=False)
    assert (folder / "aclImdb" / "train" / "pos" / "0_9.txt").read_text() == "A wonderful film."
    from genforge.data.labelled import read_labelled
    data = read_labelled(folder / "aclImdb" / "train")
    assert data.labels == ["neg", "pos"] and data.texts[0] == "Dull.<br />Awful."
    # a second call neither fetches nor unpacks again
    (root / "aclImdb_v1.tar.gz").unlink()
    (folder / "aclImdb" / "test" / "pos" / "0_10.txt").unlink()
    download.get("imdb", directory=tmp_path / "dl", mirror=url, progress=False)
    assert not (folder / "aclImdb" / "test" / "pos" / "0_10.txt").exists()


def test_archive_escaping_its_folder_is_refused(server, tmp_path, monkeypatch):
    import io
    import tarfile
    root, url = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (root / "aclImdb_v1.tar.gz").write_bytes(buf.getvalue())
    monkeypatch.setitem(download.DATASETS, "imdb", [download.Remote(
        "https://x/aclImdb_v1.tar.gz", hashlib.sha256(buf.getvalue()).hexdigest(), extract="aclImdb")])
    with pytest.raises(ValueError, match="refused to unpack"):
        download.get("imdb", directory=tmp_path / "dl", mirror=url, progress=False)
    assert not (tmp_path / "evil.txt").exists()
