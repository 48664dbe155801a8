"""Explore one question: its frames with the question's attention on the video, the logit lens, the
knockout curve of a flow and the layerwise probability of the true and false options.

Two front ends over the same measurements (:func:`measure_question`):

* :func:`live_explorer`: ipywidgets controls (question, flow, window style and size, layer) that
  recompute with a live kernel;
* :func:`static_explorer`: a Plotly figure over a precomputed grid (:func:`grid`: models x
  questions x every flow x every layer, the paper's centred window) whose controls work in the
  static book with no kernel and no internet: plotly.js is vendored in the book, the grid is JSON
  in the page, and a short script swaps the traces when a control moves.

On the plots/cli layer: imports analysis and data; plotly and ipywidgets are imported lazily.
"""

from __future__ import annotations

import base64
import io
import json

import numpy as np

from ..analysis import answer_probability, attention_to_video, sweep_plans, top_tokens
from ..analysis.runner import run_questions
from ..analysis.sweep import Sweep, sweep_rows
from ..data import read_frames
from ..knockout import FLOW_SETS
from ..data.video import NUM_FRAMES

FLOWS = [f for flows in FLOW_SETS.values() for f in flows]


def measure_question(fm, sample, flows=FLOWS, k: int | None = None, style: str = "center",
                     attention_flow: str | None = None, attention_layer: int | None = None,
                     num_frames: int = NUM_FRAMES, top_k: int = 5) -> dict:
    """Everything the explorer shows for one question, as plain lists (JSON-ready, 4 decimals).

    ``attention``: ``[layer, frame, tokens per frame]``, the question tokens' attention on each frame's
    tokens (mean over heads and question tokens); unmodified, or with ``attention_flow`` knocked out
    in the window centred at ``attention_layer``. ``knockout``: per flow, ``[layer]`` mean relative
    change (%) of the predicted option's probability (the sweep's rows,
    :func:`flowutils.analysis.sweep.sweep_rows`).
    ``options``: ``[layer, option]`` logit-lens probability of each option letter at the last position.
    ``top``: per layer, the logit lens's ``top_k`` tokens at the last position with their probabilities.
    The question goes through the per-question runner (:mod:`flowutils.analysis.runner`); a skipped
    question (an undecodable video, say) is a ValueError naming the reason.
    """
    import pandas as pd

    k = k or fm.protocol.window_size
    tok = fm.tokenizer

    def measure(question):
        prepared, base = question.prepared, question.baseline
        lay = prepared.layout
        plan = None
        if attention_flow is not None:
            plan = sweep_plans(lay, [attention_flow], fm.n_layers, k, style, [attention_layer])[0]
        att = attention_to_video(fm, prepared, lay.question, plan).float().mean(dim=(1, 2))  # [layer, frame, tok]
        probs, ids = top_tokens(fm, base, [len(base.layer_outputs[0][0]) - 1], k=top_k)
        sweep = pd.DataFrame(sweep_rows(fm, question, flows, k, style))
        return [{
            "sample_id": question.sample_id, "question": sample.question, "options": list(sample.candidates),
            "answer": sample.answer, "task": sample.task, "gold_index": prepared.gold_index, "layers": fm.n_layers,
            "k": k, "style": style, "predicted": tok.convert_ids_to_tokens(question.predicted),
            "attention": np.round(att.numpy(), 4).tolist(),
            "option_probability": np.round(answer_probability(fm, base, prepared.option_ids).numpy(), 4).tolist(),
            "top": [[[tok.convert_ids_to_tokens(int(i)), round(float(p), 4)] for p, i in zip(ps[0], ix[0])]
                    for ps, ix in zip(probs, ids)],
            "knockout": {flow: np.round(g.sort_values("layer")["relative_change_pct"].to_numpy(), 3).tolist()
                         for flow, g in sweep.groupby("flow", sort=False)},
        }]

    table = run_questions(fm, [sample], measure, analysis="measure_question", num_frames=num_frames,
                          problems=Sweep(flows, k, style).problems(fm.n_layers), progress=False)
    if not len(table):  # skipped (every question is in the sample mode "all")
        (skip,) = table.attrs["skipped"]
        raise ValueError(f"{fm.name}: question {skip['sample_id']} skipped: {skip['reason']}")
    entry = table.to_dict("records")[0]
    del entry["sample_id"]
    return entry


def frames_png(sample, num_frames: int = NUM_FRAMES) -> str:
    """The question's frames side by side, as a PNG data URI."""
    from PIL import Image

    strip = np.concatenate(list(read_frames(sample.video_path, num_frames, sample.bound)), axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def grid(models: dict, samples, flows=FLOWS, num_frames: int = NUM_FRAMES, progress: bool = True) -> dict:
    """The static explorer's data: ``models`` name -> FlowModel, each asked every one of ``samples``."""
    from tqdm.auto import tqdm

    frames = [frames_png(s, num_frames) for s in samples]
    entries = []
    for name, fm in models.items():
        for i, s in enumerate(tqdm(samples, desc=f"explore {name}", disable=not progress)):
            entries.append({"model": name, "frames": i, **measure_question(fm, s, flows, num_frames=num_frames)})
    return {"flows": [f for f in flows], "frames": frames, "entries": entries}


def _blocks(att, width: int, height: int):
    """``[frame, tokens]`` -> heatmap ``z`` over the frame strip: each frame's square grid of patches."""
    att = np.asarray(att)
    side = int(round(att.shape[1] ** 0.5))
    return np.concatenate([a.reshape(side, side) for a in att], axis=1), width / att.shape[0] / side, height / side


def _figure(height_px: int = 640):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=3, row_heights=[0.38, 0.62], vertical_spacing=0.16, horizontal_spacing=0.08,
                        specs=[[{"colspan": 3}, None, None], [{}, {}, {}]],
                        subplot_titles=["", "knockout of the flow", "option probability", "top tokens (logit lens)"])
    fig.add_trace(go.Image(source=""), 1, 1)
    fig.add_trace(go.Heatmap(z=[[0]], colorscale="Inferno", opacity=0.55, showscale=False, hoverinfo="z"), 1, 1)
    fig.add_trace(go.Scatter(mode="lines+markers", name="relative change (%)", showlegend=False), 2, 1)
    fig.add_trace(go.Scatter(mode="lines", line={"dash": "dot", "color": "gray"}, showlegend=False), 2, 1)
    fig.add_trace(go.Scatter(mode="lines+markers", name="true option", line={"color": "#2a9d3f"}), 2, 2)
    fig.add_trace(go.Scatter(mode="lines", name="false options (each)", line={"color": "#c0392b", "width": 1}), 2, 2)
    fig.add_trace(go.Scatter(mode="lines", line={"dash": "dot", "color": "gray"}, showlegend=False), 2, 2)
    fig.add_trace(go.Bar(orientation="h", showlegend=False, marker={"color": "#1f4e79"}), 2, 3)
    fig.update_xaxes(visible=False, row=1, col=1)
    fig.update_yaxes(visible=False, row=1, col=1)
    fig.update_xaxes(title_text="layer", row=2, col=1)
    fig.update_xaxes(title_text="layer", row=2, col=2)
    fig.update_yaxes(title_text="% probability change", row=2, col=1)
    fig.update_yaxes(range=[0, 1.02], row=2, col=2)
    fig.update_xaxes(range=[0, 1.02], title_text="probability", row=2, col=3)
    fig.update_yaxes(autorange="reversed", row=2, col=3)
    fig.update_layout(height=height_px, margin={"t": 130, "l": 60, "r": 20, "b": 40},
                      legend={"orientation": "h", "x": 0.36, "y": -0.12}, font={"size": 11})
    return fig


# Runs in the page: keeps the controls' choices and redraws the figure from the grid (the same traces
# and order as _figure). Plotly's "skip" buttons only report a choice; this script does the drawing.
_SCRIPT = """
(function () {
  const gd = document.getElementById('{plot_id}');
  const G = __GRID__;
  const st = {entry: 0, flow: 0, layer: Math.floor(G.entries[0].layers / 2)};
  function draw() {
    const e = G.entries[st.entry], flow = G.flows[st.flow], L = e.layers, l = st.layer;
    const layers = Array.from({length: L}, (_, i) => i + 1);
    const att = e.attention[l], side = Math.round(Math.sqrt(att[0].length));
    const z = [];
    for (let r = 0; r < side; r++) { const row = []; for (const f of att) for (let c = 0; c < side; c++) row.push(f[r * side + c]); z.push(row); }
    const img = new Image();
    img.onload = function () {
      const w = img.width / (att.length * side), h = img.height / side;
      const ko = e.knockout[flow], probs = e.option_probability, gold = e.gold_index;
      const lo = Math.min(0, ...ko) - 5, hi = Math.max(0, ...ko) + 5;
      const fx = [], fy = [];
      probs[0].forEach((_, j) => { if (j !== gold) { layers.forEach((x, i) => { fx.push(x); fy.push(probs[i][j]); }); fx.push(null); fy.push(null); } });
      const top = e.top[l];
      Plotly.restyle(gd, {
        source: [G.frames[e.frames], null, null, null, null, null, null, null],
        z: [null, z, null, null, null, null, null, null],
        dx: [null, w, null, null, null, null, null, null], dy: [null, h, null, null, null, null, null, null],
        x0: [null, w / 2, null, null, null, null, null, null], y0: [null, h / 2, null, null, null, null, null, null],
        x: [null, null, layers, [l + 1, l + 1], layers, fx, [l + 1, l + 1], top.map(t => t[1])],
        y: [null, null, ko, [lo, hi], probs.map(p => p[gold]), fy, [0, 1], top.map(t => t[0] + ' ')],
      });
      const opts = e.options.map((o, j) => String.fromCharCode(65 + j) + ') ' + o + (j === gold ? ' \u2714' : '')).join('   ');
      Plotly.relayout(gd, {'title.text': '<b>' + e.model + '</b> \u00b7 ' + e.question + '<br><span style="font-size:11px">' + opts +
        ' \u00b7 predicted ' + e.predicted + '<br>unmodified attention of the question at layer ' + (l + 1) + ' \u00b7 knockout curve: ' + flow +
        ', ' + e.style + ' window of ' + e.k + ' layers</span>'});
    };
    img.src = G.frames[e.frames];
  }
  gd.on('plotly_buttonclicked', function (ev) {
    const key = ev.menu.name; st[key] = ev.active; draw();
  });
  gd.on('plotly_sliderchange', function (ev) { st.layer = ev.step._index; draw(); });
  draw();
})();
"""


def static_explorer(data: dict, plotly_js: str = "_static/plotly.min.js", height_px: int = 640):
    """HTML of the kernel-free explorer over ``data`` (:func:`grid`): dropdowns for the question and the
    flow, a slider for the layer. ``plotly_js``: where the page finds plotly.js (the book vendors it)."""
    from IPython.display import HTML

    fig = _figure(height_px)
    skip = lambda labels: [{"method": "skip", "label": lab, "args": [None]} for lab in labels]  # noqa: E731
    questions = [f"{e['model']} · {e['task']} · {e['question'][:40]}" for e in data["entries"]]
    n_layers = data["entries"][0]["layers"]
    fig.update_layout(
        updatemenus=[{"name": "entry", "buttons": skip(questions), "x": 0, "y": 1.32, "xanchor": "left",
                      "showactive": True},
                     {"name": "flow", "buttons": skip(data["flows"]), "x": 0.55, "y": 1.32, "xanchor": "left"}],
        sliders=[{"active": n_layers // 2, "currentvalue": {"prefix": "layer "}, "x": 0.0, "len": 1.0, "y": -0.1,
                  "pad": {"t": 30}, "steps": [{"method": "skip", "label": str(i + 1), "args": [None]}
                                              for i in range(n_layers)]}])
    script = _SCRIPT.replace("__GRID__", json.dumps(data, separators=(",", ":")))
    body = fig.to_html(full_html=False, include_plotlyjs=False, post_script=script, config={"responsive": True})
    return HTML(f'<script src="{plotly_js}"></script>\n{body}')


def frame_browser(samples, titles, num_frames: int = NUM_FRAMES, plotly_js: str = "_static/plotly.min.js"):
    """HTML of a kernel-free browser of ``samples``' frames: a slider picks the question (pure Plotly:
    one image per question, the slider shows one)."""
    import plotly.graph_objects as go
    from IPython.display import HTML

    fig = go.Figure([go.Image(source=frames_png(s, num_frames), visible=i == 0, hoverinfo="skip")
                     for i, s in enumerate(samples)])
    steps = []
    for i, (s, title) in enumerate(zip(samples, titles)):
        options = "   ".join(f"({chr(65 + j)}) {c}{' ✔' if c == s.answer else ''}" for j, c in enumerate(s.candidates))
        steps.append({"method": "update", "label": title,
                      "args": [{"visible": [j == i for j in range(len(samples))]},
                               {"title.text": f"{s.question}<br><span style='font-size:11px'>{options}</span>"}]})
    fig.update_layout(sliders=[{"steps": steps, "currentvalue": {"prefix": "question "}, "pad": {"t": 20}}],
                      title={"text": steps[0]["args"][1]["title.text"], "font": {"size": 12}},
                      height=300, margin={"t": 70, "l": 10, "r": 10, "b": 10})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    body = fig.to_html(full_html=False, include_plotlyjs=False)
    return HTML(f'<script src="{plotly_js}"></script>\n{body}')


def live_explorer(models: dict, samples, num_frames: int = NUM_FRAMES):
    """ipywidgets controls (model, question, flow, window style and size, layer) that recompute the
    explorer's panels with a live kernel (matplotlib)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from ..knockout.windows import STYLES

    first = next(iter(models.values()))
    frames_cache = {}

    def show(model, index, flow, style, k, layer):
        fm, s = models[model], samples[index]
        m = measure_question(fm, s, [flow], k=k, style=style, attention_flow=flow, attention_layer=layer - 1,
                             num_frames=num_frames)
        if index not in frames_cache:
            frames_cache[index] = np.concatenate(list(read_frames(s.video_path, num_frames, s.bound)), axis=1)
        strip, att = frames_cache[index], m["attention"][layer - 1]
        z, _, _ = _blocks(att, strip.shape[1], strip.shape[0])
        fig = plt.figure(figsize=(11, 6))
        top = fig.add_subplot(2, 1, 1)
        top.imshow(strip)
        top.imshow(z, cmap="inferno", alpha=0.55, extent=(0, strip.shape[1], strip.shape[0], 0), interpolation="nearest")
        top.set_axis_off()
        top.set_title(f"{s.question} (answer: {s.answer}; predicted {m['predicted']}); question->video attention "
                      f"at layer {layer}, {flow} knocked out ({style}, k={m['k']})", fontsize=8)
        a, b, c = (fig.add_subplot(2, 3, i) for i in (4, 5, 6))
        layers = np.arange(1, m["layers"] + 1)
        a.plot(layers, m["knockout"][flow], marker="o", ms=3)
        a.axvline(layer, color="gray", ls=":")
        a.set(xlabel="layer (window centre)", ylabel="% probability change", title=flow)
        probs = np.asarray(m["option_probability"])
        for j in range(probs.shape[1]):
            gold = j == m["gold_index"]
            b.plot(layers, probs[:, j], color="#2a9d3f" if gold else "#c0392b", lw=2 if gold else 1,
                   label="true option" if gold else None)
        b.axvline(layer, color="gray", ls=":")
        b.set(xlabel="layer", ylim=(0, 1.02), title="option probability (logit lens)")
        b.legend(fontsize=7)
        names, ps = zip(*m["top"][layer - 1])
        c.barh(range(len(ps)), ps, color="#1f4e79")
        c.set_yticks(range(len(ps)), names)
        c.invert_yaxis()
        c.set(xlim=(0, 1), title=f"logit lens top tokens, layer {layer}")
        fig.tight_layout()
        plt.show()

    titles = [(f"{s.task} · {s.question[:50]}", i) for i, s in enumerate(samples)]
    return widgets.interactive(
        show, {"manual": True, "manual_name": "update"}, model=list(models), index=widgets.Dropdown(options=titles),
        flow=FLOWS, style=list(STYLES), k=widgets.IntSlider(first.protocol.window_size, 1, first.n_layers),
        layer=widgets.IntSlider(first.n_layers // 2 + 1, 1, first.n_layers))
