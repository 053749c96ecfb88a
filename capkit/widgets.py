"""The interactive attention viewer for JupyterLab (ipywidgets).

``AttentionViewer(run_dir)`` lets you pick a trained run and one of its test images, or upload a photo, choose the
beam size, and step through the generated words with a slider: the attention overlay (PNG bytes in an
``ipywidgets.Image``) and the highlighted word (``<mark class="capkit-current">``) follow the slider; hashtags from
the matching hashtag run (same encoder and decoder) are shown beside.

Every callback catches its errors and shows them as a message in the viewer: an uploaded file that is too big, a
decompression bomb, a broken or non-image file never raises. The logic lives in plain methods
(:meth:`AttentionViewer.select_run`, :meth:`~AttentionViewer.select_image`, :meth:`~AttentionViewer.load_bytes`,
:meth:`~AttentionViewer.show_word`) so tests drive it without a browser.

Without a frontend (papermill, nbconvert, a notebook viewer) the widget cannot render; the viewer's display bundle
therefore also carries a static PNG of the current caption (the word-by-word figure), which is what such tools show.
:meth:`AttentionViewer.show_static` displays the same figure on demand.
"""

from __future__ import annotations

import html
import os
import tempfile
import traceback
from pathlib import Path

import ipywidgets as W

from capkit import images, store
from capkit import folders, runs, viz

MAX_UPLOAD_BYTES = 40 * 2**20  # larger uploads are refused before decoding
KEEP_SIDE = 1024  # uploaded images are kept at most this large (the model sees 224 or 256 pixels)


class UploadRejected(ValueError):
    """An uploaded file that cannot be used; the message is meant for the user."""


def read_upload(content: bytes, name: str = "upload", max_bytes: int = MAX_UPLOAD_BYTES):
    """Decode uploaded bytes as :func:`capkit.data.open_image` does (any mode -> RGB, EXIF rotation, bomb check);
    returns a PIL image at most ``KEEP_SIDE`` pixels on its longer side, or raises :class:`UploadRejected`."""
    if not content:
        raise UploadRejected(f"{name}: the file is empty")
    if len(content) > max_bytes:
        raise UploadRejected(f"{name}: {len(content) / 2**20:.1f} MB is more than the {max_bytes / 2**20:.0f} MB "
                             "this viewer accepts")
    fd, tmp = tempfile.mkstemp(prefix="capkit-upload-", suffix=Path(name).suffix[:10])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        img = images.open_image(tmp, draft=(KEEP_SIDE, KEEP_SIDE))
        return viz.fit_image(img, KEEP_SIDE)
    except images.BadImage as e:
        if e.reason == "decompression_bomb":
            raise UploadRejected(f"{name}: refused as a possible decompression bomb ({e.detail}; the limit is "
                                 f"{images.MAX_PIXELS / 1e6:.0f} million pixels)") from None
        raise UploadRejected(f"{name}: not a usable image ({e.reason.replace('_', ' ')}"
                             f"{': ' + e.detail[:120] if e.detail else ''})") from None
    except MemoryError:
        raise UploadRejected(f"{name}: too large to decode in memory") from None
    finally:
        os.unlink(tmp)


def upload_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) of the files in a FileUpload value (ipywidgets 8: a tuple of dicts; 7: a dict by name)."""
    if isinstance(value, dict):
        return [(name, bytes(v.get("content", b""))) for name, v in value.items()]
    return [(f.get("name", "upload"), bytes(f.get("content", b""))) for f in value or ()]


def hashtag_partner(name: str, names) -> str | None:
    """The hashtag run that goes with text run ``name`` (same encoder and decoder), when ``names`` has it."""
    if name.endswith("-text") and name[:-5] + "-hashtag" in names:
        return name[:-5] + "-hashtag"
    return None


def words_html(words: list[str], current: int | None) -> str:
    """The generated words, the current one wrapped in ``<mark class="capkit-current" data-index=i>``."""
    if not words:
        return '<div class="capkit-words"><i>(no words generated)</i></div>'
    parts = []
    for i, w in enumerate(words):
        w = html.escape(w)
        if i == current:
            parts.append(f'<mark class="capkit-current" data-index="{i}" style="background:#ffd54f;'
                         f'padding:1px 3px;border-radius:3px"><b>{w}</b></mark>')
        else:
            parts.append(f'<span class="capkit-word" data-index="{i}">{w}</span>')
    return f'<div class="capkit-words" style="line-height:1.9;font-size:15px">{" ".join(parts)}</div>'


def hashtags_html(generated, reference=None, source: str = "") -> str:
    out = ['<div class="capkit-hashtags" style="color:#1565c0">']
    if generated is None:
        out.append("<i>no hashtag run with this encoder and decoder</i>")
    else:
        tags = " ".join("#" + html.escape(t) for t in generated) or "<i>(none)</i>"
        out.append(f"<b>hashtags</b>{' (' + html.escape(source) + ')' if source else ''}: {tags}")
    if reference:
        out.append(f'<br><span style="color:#666">reference: {html.escape(reference)}</span>')
    return "".join(out) + "</div>"


class AttentionViewer:
    """Pick a run and an image (or upload one), choose the beam size, step through the words.

    ``viewer.run_picker``, ``image_picker``, ``upload``, ``beam``, ``word`` are the controls; ``overlay`` (Image),
    ``words`` (HTML), ``hashtags`` (HTML), ``text`` (HTML) and ``message`` (HTML) show the state; ``caption`` is
    the current ``Run.caption`` result and ``box`` the whole widget.
    """

    def __init__(self, run_dir="runs/default", beam_size: int = 3, run: str | None = None, image: int = 0,
                 display_size: int = 360, device: str = "cpu"):
        self.run_dir, self.display_size, self.device = run_dir, display_size, device
        self.paths = {p.name: p for p in folders.list_runs(run_dir)}
        self._runs: dict[str, runs.Run] = {}
        self._captions: dict[tuple, dict] = {}
        self.run: runs.Run | None = None
        self.image = None  # the current image (PIL, RGB)
        self.image_id = None  # what the caption cache knows it by
        self.reference = None  # the current test image's prediction line
        self.caption: dict | None = None
        self.tags: list[str] | None = None
        self.tags_source = ""
        self._predictions: list[dict] = []
        self.current = 0
        self.error = False
        self._busy = False

        style = {"description_width": "80px"}
        self.run_picker = W.Dropdown(options=list(self.paths), description="run", style=style,
                                     layout=W.Layout(width="420px"))
        self.image_picker = W.Dropdown(options=[], description="test image", style=style,
                                       layout=W.Layout(width="420px"))
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload a photo",
                                   layout=W.Layout(width="200px"))
        self.beam = W.IntSlider(value=beam_size, min=1, max=8, description="beam size", continuous_update=False,
                                style=style)
        self.word = W.IntSlider(value=0, min=0, max=0, description="word", style=style,
                                layout=W.Layout(width="420px"))
        self.overlay = W.Image(format="png", layout=W.Layout(width=f"{display_size}px"))
        self.text = W.HTML()
        self.words = W.HTML()
        self.hashtags = W.HTML()
        self.message = W.HTML()
        self.overlay.add_class("capkit-overlay")
        self.word.add_class("capkit-word-slider")
        self.words.add_class("capkit-words-box")
        right = W.VBox([self.text, self.words, self.word, self.hashtags], layout=W.Layout(width="460px"))
        self.box = W.VBox([
            W.HBox([self.run_picker, self.beam]),
            W.HBox([self.image_picker, self.upload]),
            W.HBox([self.overlay, right]),
            self.message,
        ])
        self.box.add_class("capkit-viewer")

        self.run_picker.observe(self._guard(lambda c: self.select_run(c["new"])), names="value")
        self.image_picker.observe(self._guard(lambda c: self.select_image(c["new"])), names="value")
        self.beam.observe(self._guard(lambda c: self.recaption()), names="value")
        self.word.observe(self._guard(lambda c: self.show_word(c["new"])), names="value")
        self.upload.observe(self._guard(self._on_upload), names="value")

        if not self.paths:
            self.say(f"no trained runs under {html.escape(str(store.project_path(run_dir)))} (train one with 03_train)")
            return
        texts = [n for n in self.paths if n.endswith("-text")]
        self._guard(lambda _: self.select_run(run if run in self.paths else (texts or list(self.paths))[0]))(None)
        if image and self._predictions:
            self._guard(lambda _: self.select_image(min(int(image), len(self._predictions) - 1)))(None)

    # ----------------------------------------------------------------------------------------- state changes

    def _guard(self, fn):
        """Wrap a callback: errors become a message in the viewer, never an exception in the frontend."""
        def wrapped(change):
            try:
                fn(change)
            except Exception as e:  # noqa: BLE001 (a widget callback must not raise)
                self.say(f"{type(e).__name__}: {html.escape(str(e))[:500]}", error=True)
                self.last_traceback = traceback.format_exc()
        return wrapped

    def say(self, text: str = "", error: bool = False) -> None:
        colour = "#c62828" if error else "#555"
        self.error = error
        self.message.value = f'<div class="capkit-message" style="color:{colour}">{text}</div>' if text else ""

    def load(self, name: str) -> runs.Run:
        if name not in self._runs:
            self._runs[name] = runs.load_run(self.paths[name], device=self.device)
        return self._runs[name]

    def select_run(self, name: str) -> None:
        """Make ``name`` the current run and offer its test images; the current image stays when it can."""
        if self.run_picker.value != name:
            self.run_picker.value = name  # its observer calls back here
            return
        self.run = self.load(name)
        self._predictions = self.run.predictions()
        options = [(f"{p.get('key') or Path(p['image']).stem} — {p.get('prediction', '')[:40]}", i)
                   for i, p in enumerate(self._predictions)]
        keep = self.reference["image"] if self.reference else None
        index = next((i for i, p in enumerate(self._predictions) if p["image"] == keep), 0 if options else None)
        uploaded = self.image is not None and self.reference is None
        self._set_quietly(self.image_picker, options=options, value=None if uploaded else index)
        if uploaded or index is None:
            self.recaption()
        else:
            self._open_test_image(index)

    def select_image(self, index: int) -> None:
        """Caption test image ``index`` (a position in the run's predictions.jsonl)."""
        if self._busy or index is None:
            return
        if self.image_picker.value != index:
            self.image_picker.value = index  # its observer calls back here
            return
        self._open_test_image(index)

    def _open_test_image(self, index: int) -> None:
        line = self._predictions[index]
        try:
            image = images.open_image(line["image"], draft=(KEEP_SIDE, KEEP_SIDE))
        except images.BadImage as e:
            self.say(f"cannot open {html.escape(line['image'])}: {e.reason}", error=True)
            return
        self.image, self.image_id, self.reference = viz.fit_image(image, KEEP_SIDE), ("test", line["image"]), line
        self.recaption()

    def load_bytes(self, content: bytes, name: str = "upload") -> bool:
        """Caption an uploaded file; a refused file keeps the current state and says why. True when used."""
        try:
            image = read_upload(content, name)
        except UploadRejected as e:
            self.say(html.escape(str(e)), error=True)
            return False
        self.image, self.reference = image, None
        self.image_id = ("upload", name, len(content), hash(content))
        self._set_quietly(self.image_picker, value=None)
        self.recaption()
        self.say(f"uploaded {html.escape(name)} (shown at {image.width}x{image.height})")
        return True

    def _on_upload(self, change) -> None:
        files = upload_files(change["new"])
        if files:
            self.load_bytes(files[-1][1], files[-1][0])

    def _set_quietly(self, widget, **traits) -> None:
        """Set widget traits without running this viewer's callbacks."""
        self._busy = True
        try:
            for k, v in traits.items():
                setattr(widget, k, v)
        finally:
            self._busy = False

    def recaption(self) -> None:
        """Caption the current image with the current run and beam size; hashtags from the matching run."""
        if self.run is None or self.image is None:
            return
        beam, target = int(self.beam.value), self.run.config.target
        self.caption = self._caption(self.run, beam)
        self.tags, self.tags_source = None, ""
        if target == "hashtag":
            self.tags, self.tags_source = self.caption["hashtags"], self.run.name
        elif hashtag_partner(self.run.name, self.paths):
            partner = hashtag_partner(self.run.name, self.paths)
            self.tags, self.tags_source = self._caption(self.load(partner), beam)["hashtags"], partner
        ref = (self.reference or {}).get("references") or [None]
        shown = html.escape(self.caption["text"]) or "<i>(empty)</i>"
        self.text.value = (f'<div class="capkit-text" style="font-size:16px"><b>{shown}</b></div>'
                           + (f'<div style="color:#666">reference: {html.escape(ref[0])}</div>'
                              if ref[0] and target == "text" else ""))
        self.hashtags.value = hashtags_html(self.tags, ref[0] if target == "hashtag" else None, self.tags_source)
        n = len(self.caption["words"])
        self._set_quietly(self.word, max=max(n - 1, 0), value=0, disabled=n <= 1)
        self.show_word(0)
        if self.error:
            self.say("")

    def _caption(self, run: runs.Run, beam: int) -> dict:
        key = (run.name, self.image_id, beam)
        if key not in self._captions:
            if len(self._captions) > 64:
                self._captions.clear()
            self._captions[key] = run.caption(self.image, beam_size=beam)
        return self._captions[key]

    def show_word(self, i: int) -> None:
        """Show the attention behind word ``i`` over the image and highlight the word."""
        if self._busy or self.caption is None:
            return
        words, alphas = self.caption["words"], self.caption["alphas"]
        i = min(max(int(i), 0), max(len(words) - 1, 0))
        alpha = alphas[i] if len(words) else None
        self.overlay.value = viz.png_bytes(viz.overlay_image(self.image, alpha, self.display_size))
        self.words.value = words_html(words, i if words else None)
        self.current = i

    # ----------------------------------------------------------------------------------------- display

    def static_figure(self):
        """The current caption as the word-by-word figure (matplotlib)."""
        if self.caption is None:
            return None
        title = f"{self.run.name} (beam {self.caption['beam_size']})\n{self.caption['text']}"
        return viz.caption_figure(self.image, self.caption, title=title,
                                  hashtags=self.tags if self.run.config.target == "text" else None)

    def show_static(self) -> None:
        """Display the current state as a static figure (for papermill / exported notebooks)."""
        from IPython.display import display

        fig = self.static_figure()
        if fig is None:
            display(W.HTML(self.message.value or "nothing to show"))
        else:
            display(fig)

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.box._repr_mimebundle_(**kwargs) or {}
        fig = self.static_figure()
        if fig is not None:
            import base64

            bundle["image/png"] = base64.b64encode(viz.figure_png(fig)).decode("ascii")
        bundle["text/plain"] = f"AttentionViewer({len(self.paths)} runs; {self.run.name if self.run else 'no run'})"
        return bundle
