"""Open a demo report in headless Chromium and check that every image on it was decoded.

    python launch/check_report.py demo/index.html [--screenshot demo/screenshot.png]

The page marks each ``<img>`` with ``data-decoded="yes"`` once the browser has decoded it
(``naturalWidth > 0``); this script loads the page with ``chromium --headless --dump-dom``, reads the
marks, and exits 0 when all images are there, 1 (listing the missing ones) otherwise, 2 when no
Chromium is installed (``apt-get install chromium``) or the page is not a report.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
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


def dump_served(folder: Path, page: str) -> str:
    """The DOM of ``page`` (a path with its query, e.g. ``index.html?export=1``) after Chromium ran its
    scripts, ``folder`` served over http on 127.0.0.1 (ES modules do not load from file:// pages)."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (install the Debian package: apt-get install chromium)")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return _run(browser, f"http://127.0.0.1:{server.server_address[1]}/{page}", "--dump-dom")
    finally:
        server.shutdown()
        server.server_close()


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
