"""The interactive explorer of notebook 06, the ipywidgets front end of
:mod:`vitwatch.explorer.core`: pick a test image or upload a photo, choose the ViT's map, see
every backbone's answer.

:func:`has_front_end` tells whether a person is there to use it (the report's headless run is
not); :func:`build` builds it.
"""

from __future__ import annotations

from pathlib import Path

from .core import explain_all, image_from_bytes, load_test_image


def has_front_end() -> bool:
    """True when this code runs in a Jupyter kernel for a front end a person uses (JupyterLab,
    Notebook, VS Code: their execute requests allow ``input()``); False in a headless execution
    (papermill in the report build, ``jupyter nbconvert --execute``, nbclient: every request
    has ``allow_stdin`` false) and outside a kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None or not hasattr(kernel, "get_parent"):
        return False
    request = kernel.get_parent("shell") or {}
    return bool(request.get("content", {}).get("allow_stdin", False))


def build(explainers, class_names, test_images: list[tuple[str, int]], k: int = 5):
    """The ipywidgets explorer: pick a test image or upload a photo; choose the ViT's map
    (rollout, or one block and head with sliders); the figure of
    :func:`vitwatch.plotting.explorer.panel` redraws on every change."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from vitwatch.plotting import explorer as explorer_plots

    vits = [e for e in explainers if e.vit is not None]
    depth = max((e.depth for e in vits), default=1)
    heads = max((e.num_heads for e in vits), default=1)
    options = [
        (f"{Path(p).name} (true: {class_names[y]})", i) for i, (p, y) in enumerate(test_images)
    ]
    pick = w.Dropdown(
        options=options,
        description="test image",
        layout=w.Layout(width="420px"),
        style={"description_width": "initial"},
    )
    upload = w.FileUpload(accept="image/*", multiple=False, description="or upload a photo")
    mode = w.ToggleButtons(
        options=[("attention rollout", "rollout"), ("one block and head", "layer")],
        description="ViT map",
    )
    layer = w.IntSlider(value=depth, min=1, max=depth, description="block", disabled=True)
    head = w.IntSlider(
        value=0,
        min=0,
        max=heads,
        description="head (0 = mean)",
        disabled=True,
        style={"description_width": "initial"},
    )
    out = w.Output()
    state = {"image": None, "title": ""}

    def current_image():
        if state["image"] is None:
            path, y = test_images[pick.value]
            state["image"] = load_test_image(path)
            state["title"] = f"{Path(path).name}, true breed: {class_names[y]}"
        return state["image"], state["title"]

    def redraw(*_):
        layer.disabled = head.disabled = mode.value == "rollout"
        with out:
            out.clear_output(wait=True)
            try:
                image, title = current_image()
                lay = None if mode.value == "rollout" else layer.value - 1
                hd = None if mode.value == "rollout" or head.value == 0 else head.value - 1
                rows = explain_all(explainers, image, class_names, lay, hd, k)
                fig = explorer_plots.panel(
                    [image], [rows], [title], title="What each backbone sees"
                )
                display(fig)
                plt.close(fig)
            except ValueError as exc:
                print(exc)

    def on_pick(_):
        state["image"] = None
        redraw()

    def on_upload(change):
        files = change["new"]
        if not files:
            return
        f = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        name = f.get("name", "upload") if isinstance(f, dict) else getattr(f, "name", "upload")
        content = f["content"] if isinstance(f, dict) else f.content
        with out:
            try:
                state["image"] = image_from_bytes(bytes(content), name)
                state["title"] = f"uploaded: {name}"
            except ValueError as exc:
                out.clear_output()
                print(exc)
                return
        redraw()

    pick.observe(on_pick, names="value")
    upload.observe(on_upload, names="value")
    for control in (mode, layer, head):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([pick, upload]), w.HBox([mode]), w.HBox([layer, head]), out])
