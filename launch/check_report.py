"""Open a demo report in headless Chromium and check that every image on it was decoded.

    python launch/check_report.py demo/index.html [--screenshot demo/screenshot.png]

The page marks each ``<img>`` with ``data-decoded="yes"`` once the browser has decoded it
(``naturalWidth > 0``); this script loads the page with ``chromium --headless --dump-dom``, reads the
marks, and exits 0 when all images are there, 1 (listing the missing ones) otherwise, 2 when no
Chromium is installed (``apt-get install chromium``) or the page is not a report.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import http.server
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from compat.cli import OneLineParser, check_output_file, run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, page: Path | str, *flags: str) -> str:
    """Chromium headless on ``page`` (a file, or an http URL) with ``flags``; its stdout."""
    url = page if isinstance(page, str) else page.resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            *flags,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def end_headers(self):
        # cross-origin isolated, as a site serving onnxruntime-web with threads would be
        # (SharedArrayBuffer needs both headers)
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


class _Served:
    """``folder`` over http on 127.0.0.1 while the block runs; ``.url(page)``."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def url(self, page: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{page}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def dump_served(folder: Path, page: str) -> str:
    """The DOM of ``page`` (a path with its query, e.g. ``index.html?export=1``) after Chromium ran its
    scripts, ``folder`` served over http on 127.0.0.1 (ES modules do not load from file:// pages)."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install the Debian package: apt-get install chromium)")
    with _Served(folder) as served:
        return _run(browser, served.url(page), "--dump-dom")


def evaluate_served(folder: Path, page: str, until: str, *, timeout: float = 300.0, flags: tuple = ()) -> str:
    """The DOM of ``page`` once the JavaScript expression ``until`` is truthy on it, ``folder`` served
    over http on 127.0.0.1 (cross-origin isolated). Unlike :func:`dump_served` this runs in real time
    (no virtual-time budget, so ``performance.now()`` measures) and waits for asynchronous work, by
    driving headless Chromium over the DevTools protocol on a pipe."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install the Debian package: apt-get install chromium)")
    with _Served(folder) as served, tempfile.TemporaryDirectory() as profile:
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # the browser reads commands on fd 3 and writes replies on fd 4
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            *flags,
            "about:blank",
        ]

        # a small Python trampoline moves the two pipe ends onto fds 3 and 4 and execs the browser
        # (no preexec_fn: forking a process that may run JAX threads is unsafe; the ends go via fds
        # above 9 so that neither dup2 overwrites the other); every other end is close-on-exec
        r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w))
        trampoline = "import os, sys; r, w = map(int, sys.argv[1:3]); os.dup2(r, 3); os.dup2(w, 4); " + (
            "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", trampoline, str(r), str(w), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(r, w),
        )
        for fd in (to_browser_r, from_browser_w, r, w):
            os.close(fd)
        cdp = _Cdp(to_browser_w, from_browser_r, time.time() + timeout)
        try:
            target = cdp.call("Target.createTarget", url=served.url(page))["targetId"]
            session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            probe = f"(() => {{ try {{ return !!({until}); }} catch (e) {{ return false; }} }})()"
            while True:
                try:
                    r = cdp.call("Runtime.evaluate", session=session, expression=probe, returnByValue=True)
                except RuntimeError:  # no execution context yet: the page is still loading
                    r = {}
                if r.get("result", {}).get("value") is True:
                    break
                if time.time() > cdp.deadline:
                    raise TimeoutError(f"{page}: {until} did not become true in {timeout:.0f} s")
                time.sleep(0.1)
            dom = "document.documentElement.outerHTML"
            return cdp.call("Runtime.evaluate", session=session, expression=dom, returnByValue=True)["result"]["value"]
        finally:
            with contextlib.suppress(Exception):
                cdp.call("Browser.close")
            os.close(to_browser_w)
            os.close(from_browser_r)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _Cdp:
    """DevTools protocol messages over Chromium's pipe: JSON, each ended by a NUL byte."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.w, self.r, self.deadline, self.n, self.buf = write_fd, read_fd, deadline, 0, b""

    def call(self, method: str, session: str | None = None, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self.buf:
                if time.time() > self.deadline:
                    raise TimeoutError(f"Chromium did not answer {method} in time")
                ready, _, _ = select.select([self.r], [], [], 1.0)
                if ready:
                    chunk = os.read(self.r, 1 << 20)
                    if not chunk:
                        raise RuntimeError("Chromium closed the DevTools pipe")
                    self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.n:
                if "error" in reply:
                    raise RuntimeError(f"Chromium: {method}: {reply['error'].get('message')}")
                return reply.get("result", {})


def check(page: str | Path, screenshot: str | Path | None = None) -> tuple[int, int, list[str]]:
    """``(images, decoded, missing sources)`` of the report as Chromium renders it."""
    page = Path(page)
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install the Debian package: apt-get install chromium)")
    dom = _run(browser, page, "--dump-dom")
    if 'data-ready="yes"' not in dom:
        raise ValueError(f"{page}: the page did not finish loading in Chromium (no data-ready mark)")
    imgs = re.findall(r"<img\b[^>]*>", dom)
    missing = [re.search(r'src="([^"]*)"', t).group(1) for t in imgs if 'data-decoded="yes"' not in t]
    if screenshot:
        _run(browser, page, f"--screenshot={Path(screenshot).resolve()}", "--window-size=1200,2400")
    return len(imgs), len(imgs) - len(missing), missing


def _check_command(args) -> int:
    if args.screenshot:
        check_output_file(args.screenshot, args.force)
    n, ok, missing = check(args.page, args.screenshot)
    print(f"{args.page}: {ok} of {n} images decoded by Chromium")
    if missing or n == 0:
        print("missing: " + ", ".join(missing or ["(no images on the page)"]), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(
        prog="check_report",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("page", help="the report's index.html")
    ap.add_argument("--screenshot", default=None, help="also save a PNG screenshot of the page")
    ap.add_argument("--force", action="store_true", help="overwrite the screenshot if it exists")
    return run("check_report", ap, _check_command, argv, expected=(FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
