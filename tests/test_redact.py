"""No credentials in source descriptions: :func:`redact_url` on every shape of secret
(properties), and a real ``deepercut run`` whose stream header and stderr hold none."""

from __future__ import annotations

import functools
import http.server
import string
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from engine_support import save_tiny_model
from hypothesis import assume, given
from hypothesis import strategies as st

from deepercut.io.redact import MASK, redact_text, redact_url
from deepercut.streams import read_poses

ROOT = Path(__file__).resolve().parents[1]

schemes = st.sampled_from(["rtsp", "rtsps", "http", "https", "rtmp", "srt", "tcp", "udp"])
hosts = st.builds(
    lambda name, port: name + port,
    st.from_regex(r"[a-z][a-z0-9\-]{0,8}(\.[a-z]{2,4}){0,2}", fullmatch=True),
    st.sampled_from(["", ":554", ":8080", ":1"]),
)
paths = st.from_regex(r"(/[A-Za-z0-9._\-]{0,8}){0,3}", fullmatch=True)
#: Anything a user may type into a password, unencoded: "@", "/", ":", "?", "#", spaces, unicode.
passwords = st.text(min_size=3, max_size=24)
users = st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=10)
#: Query values as they travel: unreserved characters and percent escapes.
query_values = st.text(alphabet=string.ascii_letters + string.digits + "-._~%", min_size=3)
secret_params = st.sampled_from(
    [
        "token",
        "access_token",
        "Token",
        "password",
        "passwd",
        "pwd",
        "key",
        "apiKey",
        "api_key",
        "secret",
        "sig",
        "signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "auth",
        "authorization",
        "session_id",
        "jwt",
    ]
)


@given(schemes, users, passwords, hosts, paths)
def test_no_password_survives(scheme: str, user: str, password: str, host: str, path: str) -> None:
    url = f"{scheme}://{user}:{password}@{host}{path}"
    assume(password not in f"{scheme}://{MASK}@{host}{path}")
    redacted = redact_url(url)
    assert password not in redacted
    assert redacted == f"{scheme}://{MASK}@{host}{path}"  # where it points stays visible


@given(schemes, passwords, hosts, paths)
def test_no_user_only_token_survives(scheme: str, token: str, host: str, path: str) -> None:
    assume(token not in f"{scheme}://{MASK}@{host}{path}")
    assert token not in redact_url(f"{scheme}://{token}@{host}{path}")


@given(schemes, hosts, paths, secret_params, query_values, st.sampled_from(["?", "#"]))
def test_no_secret_parameter_survives(
    scheme: str, host: str, path: str, name: str, value: str, sep: str
) -> None:
    url = f"{scheme}://{host}{path}{sep}channel=1&{name}={value}&subtype=0"
    assume(value not in f"{scheme}://{host}{path}channel=1&{name}={MASK}&subtype=0")
    redacted = redact_url(url)
    assert value not in redacted
    assert redacted == f"{scheme}://{host}{path}{sep}channel=1&{name}={MASK}&subtype=0"


@given(schemes, users, st.text(alphabet=string.printable.strip() + "é", min_size=3), hosts)
def test_no_password_survives_in_a_message(scheme: str, user: str, pw: str, host: str) -> None:
    assume("'" not in pw and '"' not in pw and "://" not in pw)
    message = f"cannot open '{scheme}://{user}:{pw}@{host}/s': Connection refused"
    assume(pw not in f"cannot open '{scheme}://{MASK}@{host}/s': Connection refused")
    assert pw not in redact_text(message)


@given(st.text())
def test_text_without_a_url_is_unchanged(text: str) -> None:
    assume("://" not in text)
    assert redact_url(text) == text == redact_text(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:secret@cam/s", "rtsp://***@cam/s"),
        ("rtsp://user:p@ss@host/s", "rtsp://***@host/s"),
        ("rtsp://user:pa/ss@cam:554/s", "rtsp://***@cam:554/s"),
        ("https://TOKEN@host/", "https://***@host/"),
        ("http://cam/v.mjpg?user=a&password=b", "http://cam/v.mjpg?user=a&password=***"),
        ("/dev/video0", "/dev/video0"),
        ("clips/a@b.mp4", "clips/a@b.mp4"),
    ],
)
def test_examples(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# ----------------------------------------------------------------------------- a real run

SECRET, TOKEN = "s3cr3t-PW", "T0KEN-4711"


def _deepercut(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m deepercut`` in a child process: stderr as FFmpeg and Python write it."""
    return subprocess.run(
        [sys.executable, "-m", "deepercut", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An MPEG-TS clip on a loopback HTTP server (FFmpeg sends the credentials; this server
    does not check them)."""
    root = tmp_path_factory.mktemp("redact")
    with av.open(str(root / "clip.ts"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(10):
            image = np.full((120, 160, 3), 20 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    save_tiny_model(root / "tiny.pt")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, server.server_address[1]
    server.shutdown()
    server.server_close()


def test_stream_header_and_stderr_hold_no_credentials(served) -> None:
    root, port = served
    url = f"http://admin:{SECRET}@127.0.0.1:{port}/clip.ts?token={TOKEN}"
    out = root / "poses.msgpack"
    done = _deepercut(
        "run",
        url,
        "-o",
        str(out),
        "--model",
        str(root / "tiny.pt"),
        "--workers",
        "0",
        "--max-frames",
        "3",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with read_poses(out) as stream:
        header = stream.header
        assert len(list(stream)) >= 1
    assert header["source"]["spec"] == f"http://***@127.0.0.1:{port}/clip.ts?token=***"
    for text in (out.read_bytes().decode("latin-1"), done.stderr):
        assert SECRET not in text and TOKEN not in text
    assert "***@127.0.0.1" in done.stderr  # the progress line still names the source


def test_error_for_an_unreachable_camera_holds_no_credentials(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{port}/stream?token={TOKEN}"
    done = _deepercut(
        "run",
        url,
        "-o",
        str(tmp_path / "p.msgpack"),
        "--model",
        str(save_tiny_model(tmp_path / "m.pt")),
        "--workers",
        "0",
    )
    assert done.returncode == 2
    assert f"cannot open rtsp://***@127.0.0.1:{port}/stream?token=***" in done.stderr
    assert SECRET not in done.stderr and TOKEN not in done.stderr
