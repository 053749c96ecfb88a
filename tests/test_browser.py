"""04_attention in a real JupyterLab, driven by headless Chromium through playwright.

The test starts JupyterLab on localhost (a free port, a token, a temporary root folder) with a copy of 04_attention
whose parameters point at a smoke run, opens it in Debian's Chromium (no browser download), runs all cells from the
Run menu, waits for the attention viewer, moves the word slider with the keyboard, and checks that the displayed
attention image (its bytes) and the highlighted word change. Screenshots go to the test's tmp folder and to
``runs/browser/04_attention.png``. JupyterLab and its kernels are shut down by the fixture's finalizer, also on
failure.

Needs Debian's ``chromium`` (``make browser`` installs it); without it the test fails, unless
``CAPKIT_SKIP_BROWSER=1`` (then it is skipped).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import NOTEBOOKS, ROOT
from test_widgets import smoke_run_dir

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = ROOT / "runs" / "browser" / "04_attention.png"
LAB_SETTINGS = {  # quiet, deterministic JupyterLab: no news or update checks, every cell attached to the page
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

# bytes of the viewer's overlay image (read through its blob: URL) and the highlighted word
READ_VIEWER = """async () => {
  const img = document.querySelector('img.capkit-overlay');
  const mark = document.querySelector('.capkit-words mark.capkit-current');
  if (!img || !img.src || !mark) return null;
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  let h = 2166136261;
  for (const b of bytes) { h = Math.imul(h ^ b, 16777619) >>> 0; }
  return {src: img.src, size: bytes.length, hash: h, index: mark.dataset.index, word: mark.textContent};
}"""


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    if os.environ.get("CAPKIT_SKIP_BROWSER") == "1":
        pytest.skip("chromium is missing and CAPKIT_SKIP_BROWSER=1")
    pytest.fail("Debian's chromium is missing: run `make browser` (it apt-installs chromium), "
                "or set CAPKIT_SKIP_BROWSER=1 to skip the browser test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url: str, proc, timeout: float = 90) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} within {timeout} s")


def wait_for_kernel_connection(base: str, token: str, timeout: float = 60) -> None:
    """Wait until the server sees the page's kernel idle with a websocket attached (the page's own idle marker
    can show before that, and a Run All sent then is silently dropped)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5) as r:
            kernels = json.load(r)
        if kernels and all(k.get("connections", 0) >= 1 and k.get("execution_state") == "idle" for k in kernels):
            return
        time.sleep(0.5)
    raise TimeoutError(f"no connected idle kernel after {timeout} s: {kernels}")


def run_all_cells(page, tries: int = 3) -> None:
    """Run > Run All Cells; again if no cell has started within a while (a request lost while the kernel
    connection settles). Rerunning is harmless: the notebook's cells are idempotent."""
    started = "() => [...document.querySelectorAll('.jp-InputArea-prompt')].some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"
    for attempt in range(tries):
        page.locator(".lm-MenuBar-itemLabel").filter(has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(started, timeout=20_000)
            return
        except Exception:  # playwright's TimeoutError
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")


def stop_lab(proc, base: str, token: str) -> None:
    """Shut JupyterLab down (its kernels with it); kill whatever is left."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # no psutil, or the server is gone
        children = []
    if proc.poll() is None:
        try:
            req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=5).close()
        except OSError:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for child in children:  # kernels that outlived the server
        try:
            child.kill()
        except Exception:  # already gone
            pass


@pytest.fixture(scope="module")
def lab(tmp_path_factory, sample_dir, cache_dir):
    """JupyterLab serving a prepared copy of 04_attention; yields (base url, token, root folder, timings)."""
    chromium = find_chromium()
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("the playwright Python package is missing: pip install -e '.[test]'")
    import papermill as pm

    from capkit.runs import load_run

    timings = {}
    t0 = time.perf_counter()
    runs = smoke_run_dir(tmp_path_factory.getbasetemp() / "capkit_att_runs", sample_dir, cache_dir)
    # the viewer opens on a test image whose caption has two words or more, so the slider can move
    run = load_run(runs / "efficientnet_lite0-soft-text")
    beam = 2
    lengths = [len(c["words"]) for c in run.caption_many([p["image"] for p in run.predictions()], beam_size=beam)]
    first = next((i for i, n in enumerate(lengths) if n >= 2), None)
    assert first is not None, f"every smoke caption has fewer than two words: {lengths}"
    timings["smoke runs"] = time.perf_counter() - t0

    root = tmp_path_factory.mktemp("lab")
    params = dict(dataset="sample", data_dir=str(sample_dir), run_dir=str(runs), seed=0, smoke=True,
                  figures_dir=str(root / "figures"), cache_dir=str(cache_dir), beam_size=beam, viewer_image=first)
    pm.execute_notebook(str(NOTEBOOKS / "04_attention.ipynb"), str(root / "04_attention.ipynb"), parameters=params,
                        prepare_only=True, kernel_name="python3", progress_bar=False)
    settings = root / ".lab-settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    port, token = free_port(), os.urandom(16).hex()
    base = f"http://127.0.0.1:{port}"
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
         "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly", "--LabApp.news_url=",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={root / '.lab-workspaces'}"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime")})
    try:
        t1 = time.perf_counter()
        wait_for_server(f"{base}/api/status?token={token}", proc)
        timings["jupyterlab start"] = time.perf_counter() - t1
        yield base, token, root, chromium, timings
    finally:
        stop_lab(proc, base, token)
        log.close()


def test_04_attention_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, root, chromium, timings = lab
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            t0 = time.perf_counter()
            page.goto(f"{base}/lab/tree/04_attention.ipynb?token={token}", timeout=90_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            wait_for_kernel_connection(base, token)
            timings["open notebook + kernel"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            run_all_cells(page)
            viewer = page.locator(".capkit-viewer")
            viewer.wait_for(timeout=150_000)
            page.wait_for_function("document.querySelector('img.capkit-overlay')?.src?.length > 0", timeout=60_000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            timings["run all cells"] = time.perf_counter() - t0
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                  has_text="Traceback")
            assert errors.count() == 0, errors.first.inner_text()
            viewer.scroll_into_view_if_needed()

            before = page.evaluate(READ_VIEWER)
            assert before is not None and before["index"] == "0" and before["size"] > 1000
            handle = page.locator(".capkit-word-slider .noUi-handle").first
            handle.click()
            handle.press("ArrowRight")
            page.wait_for_function(
                "document.querySelector('.capkit-words mark.capkit-current')?.dataset.index === '1'", timeout=30_000)
            page.wait_for_function(f"document.querySelector('img.capkit-overlay').src !== {json.dumps(before['src'])}",
                                   timeout=30_000)
            after = page.evaluate(READ_VIEWER)
            assert after["index"] == "1"
            assert after["hash"] != before["hash"], "the attention image did not change with the slider"
            words = page.locator(".capkit-words [data-index]").all_inner_texts()
            assert after["word"] == words[1] and before["word"] == words[0]
        finally:
            page.screenshot(path=str(tmp_path / "04_attention.png"))
            shutil.copyfile(tmp_path / "04_attention.png", SCREENSHOT)
            browser.close()
            print("browser test timings (s):", {k: round(v, 1) for k, v in timings.items()})
