"""Rehearse the real user's path on a GPU: the section notebooks, run by papermill as the "Rerun on a real
model" page prints them, on random-weight checkpoints of the paper's 7B shapes, and check the page's estimate.

Two checkpoints are written in PLLaVA's legacy on-disk layout (``language_model.model.*``,
``vision_tower.*``, ``multi_modal_projector.*`` in safetensors shards, a LLaVA ``config.json``
with the real shapes: CLIP ViT-L/14 at 336 px, a Llama-2-7B language model, vocabulary 32064,
``<image>`` = 32000), under the model manifests' names in ``$FLOWUTILS_MODEL_DIR``:
``llava-next-7b-video-ft`` (the VideoLLM) and ``llava-v1.6-vicuna-7b`` (its ImageLLM base). Their
tokenizer is a word-level one built from local classes over the benchmark's words (no hub), padded
so that ``<image>`` has the real id. Every ``config.json`` carries ``"flowutils_random_weights": true``.

The benchmark is a TVBench-format one (``json/<task>.json`` + mp4 videos), rendered beforehand with
``python -m flowutils data --size 336`` and checked here with ``python -m flowutils validate --decode-videos``.

Then, in this order:

1. **Unit costs** (``unit_costs_<gpu>.json``): the seconds of each part the Rerun page's estimate is made of
   (:data:`flowutils.book.rerun.UNITS`), each measured apart from the pages, per question through the
   analyses' own functions and the runner's phase timings: the kernel's start and imports (papermill on a
   one-cell notebook), loading a checkpoint, preparing a question, a full forward, a sweep plan of each kind, a generated
   token, the logit-lens, keyword, word-attention and Table 3 measurements, and a figure panel (Figure 6's figure
   over the units' questions, drawn, saved and rendered inline, divided by its panels).
2. **The pages**: each section notebook as the Rerun page's command says (the paper's protocol comes from
   the manifests), its wall time and peak GPU memory written to ``rehearsal.json`` after each one.
3. **The check**: :func:`flowutils.book.rerun.estimate` from those unit costs, for the rehearsal's questions,
   sample mode and measured accuracy, against each page's measured wall time (the issue's bar: within 30%).

Steps already done in ``--work`` (checkpoints, unit costs, pages) are not done again, so the run can be
split over several calls on one machine.

    python benchmarks/rehearsal.py --bench BENCH --models /tmp/models --out $OUT --sample-mode all

``--smoke`` runs the same steps on the CPU with tiny widths (32 decoder layers of width 64, a 2-layer vision
tower), to find a broken step before a GPU lease is spent on it; since those widths are not the manifests',
their shape check is switched off in this process and in the page kernels (a ``sitecustomize`` on their path).

Random weights make every verdict of these pages meaningless: this measures the path, not the paper.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIDEO_LLM, IMAGE_LLM = "llava-next-7b-video-ft", "llava-v1.6-vicuna-7b"
IMAGE_TOKEN_ID, VOCAB = 32000, 32064
GENERATED = 12  # tokens generated per answer when the token unit is measured
# LLaVA-NeXT-7B-Video-FT's shapes: CLIP ViT-L/14 at 336 px, Llama-2-7B
VISION = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
          "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768}
TEXT = {"model_type": "llama", "vocab_size": VOCAB, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
        "tie_word_embeddings": False}
SMOKE_VISION = {**VISION, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "projection_dim": 64}
SMOKE_TEXT = {**TEXT, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4}


def tokenizer(words: str):
    """A word-level fast tokenizer over the toy vocabulary and ``words``, with ``<image>`` at the real id 32000."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from flowutils.toy.models import build_tokenizer

    vocab = {t: i for t, i in build_tokenizer(words).get_vocab().items() if t not in ("<image>", "<video>")}
    used = set(vocab.values())
    # placeholders are single words: "<unused7>" would come back from decoding as three tokens ("<", "unused7", ">"),
    # and the rehearsal counts generated tokens by encoding the generated text again
    vocab.update({f"unused{i}": i for i in range(IMAGE_TOKEN_ID) if i not in used})
    vocab["<image>"] = IMAGE_TOKEN_ID
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(r"<image>", behavior="isolated"),
                                                 pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return fast


def dtype(device: str) -> str:
    """The weights' dtype on ``device``: bfloat16 on the GPU, as the Rerun page's commands; float32 for the smoke."""
    return "bfloat16" if device == "cuda" else "float32"


def write_checkpoint(path: Path, words: str, seed: int, device: str = "cuda", smoke: bool = False) -> None:
    """A random-weight PLLaVA-layout checkpoint of LLaVA-NeXT-7B-Video-FT's shapes (bf16 safetensors shards;
    ``smoke``: tiny widths, float32)."""
    import torch
    import transformers
    from safetensors.torch import save_file

    tok = tokenizer(words)
    config = transformers.LlavaConfig(
        vision_config=SMOKE_VISION if smoke else VISION,
        text_config={**(SMOKE_TEXT if smoke else TEXT), "pad_token_id": tok.pad_token_id},
        image_token_index=IMAGE_TOKEN_ID, vision_feature_layer=-2, vision_feature_select_strategy="default",
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.LlavaForConditionalGeneration(config).to(getattr(torch, dtype(device))).eval()
    legacy = {"model.language_model.": "language_model.model.", "lm_head.": "language_model.lm_head.",
              "model.vision_tower.": "vision_tower.", "model.multi_modal_projector.": "multi_modal_projector."}
    path.mkdir(parents=True, exist_ok=True)
    shard, size, index, n = {}, 0, {}, 0
    items = list(model.state_dict().items())
    for j, (key, value) in enumerate(items):
        prefix = next(p for p in legacy if key.startswith(p))
        shard[legacy[prefix] + key[len(prefix):]] = value.detach().to("cpu").contiguous()
        size += value.numel() * value.element_size()
        if size > 4 << 30 or j == len(items) - 1:  # ~4 GiB shards, as the hub's checkpoints
            n += 1
            name = f"model-{n:05d}.safetensors"
            save_file(shard, path / name, metadata={"format": "pt"})
            index.update({k: name for k in shard})
            shard, size = {}, 0
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": index}))
    config.save_pretrained(path)
    meta = json.loads((path / "config.json").read_text())
    meta["flowutils_random_weights"] = True
    (path / "config.json").write_text(json.dumps(meta, indent=1))
    side = VISION["image_size"]
    image = transformers.CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    transformers.LlavaProcessor(image_processor=image, tokenizer=tok, patch_size=VISION["patch_size"]).save_pretrained(path)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def startup_seconds(work: Path) -> float:
    """Seconds for papermill to start a kernel and import what the section pages import (a one-cell notebook)."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import torch, transformers, pandas, matplotlib\n"
        "from flowutils.book import figures, parameters\n"
        "from flowutils.paper import answer, integration, keywords, pathways, temporal\n"
        "from flowutils.analysis import Sweep, run_sweep")])
    nb.metadata["kernelspec"] = {"name": "flowutils", "display_name": "flowutils", "language": "python"}
    path = work / "startup.ipynb"
    nbformat.write(nb, path)
    return run(["papermill", "--no-progress-bar", "-k", "flowutils", str(path), str(work / "startup-out.ipynb")],
               work / "startup.log")


def measure_units(models: Path, samples, work: Path, device: str, per_task: int = 2) -> dict:
    """Seconds of each of the estimate's units (:data:`flowutils.book.rerun.UNITS`) on the 7B VideoLLM, measured
    on the first ``per_task`` questions of each task through the analyses the pages call (no result store), and
    the share of them the model answers correctly (``accuracy``)."""
    import matplotlib.pyplot as plt
    import torch

    from flowutils.analysis import Sweep, run_sweep
    from flowutils.book import figures
    from flowutils.engine import generate, run_baseline
    from flowutils.knockout import FLOW_SETS
    from flowutils.models import load
    from flowutils.paper import answer, integration, keywords, pathways

    os.environ["FLOWUTILS_MODEL_DIR"] = str(models)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    units = {"startup": startup_seconds(work)}
    sync()
    t0 = time.perf_counter()
    fm = load(VIDEO_LLM, dtype=getattr(torch, dtype(device)), device=device)
    sync()
    units["load"] = time.perf_counter() - t0
    seen, qs = {}, []
    for s in samples:
        seen[s.task] = seen.get(s.task, 0) + 1
        if seen[s.task] <= per_task:
            qs.append(s)
    run_baseline(fm, fm.prepare_sample(qs[0]))  # warm-up: the first CUDA kernels of each kind
    n = len(qs)

    def per_question(table, phase="measure_s", count=n):
        return table.attrs["timings"][phase] / count

    flows = FLOW_SETS["vql-to-ql"] + FLOW_SETS["question-and-options-to-last"] + FLOW_SETS["vq-to-true-opt"]
    sweep = run_sweep(fm, qs, Sweep(flows, fm.protocol.window_size, "center", sample_mode="all"), progress=False)
    units["prepare"] = per_question(sweep, "prepare_s")
    units["forward"] = per_question(sweep, "baseline_s")
    units["plan"] = per_question(sweep) / (len(flows) * fm.n_layers)
    # a figure as a page draws it: the curves' bootstrap, saved as svg and png, and shown inline (the notebook's png)
    start = time.perf_counter()
    fig, curves = figures.knockout_figure(sweep[sweep.flow_set == "question-and-options-to-last"], "panel unit",
                                          all_tasks=True)
    figures.save_figure(fig, work / "panel-unit", "figure", curves)
    fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")
    units["panel"] = (time.perf_counter() - start) / len(fig.axes)
    plt.close(fig)
    frames = run_sweep(fm, qs, Sweep(["cross-frame"], fm.protocol.window_size, "center", sample_mode="all"),
                       progress=False)
    units["frame_plan"] = per_question(frames) / fm.n_layers
    table = answer.answer_table(fm, qs, progress=False)
    units["lens"] = per_question(table)
    accuracy = float(table.groupby("sample_id")["correct_baseline"].first().astype(bool).mean())
    hits = keywords.keyword_hits(fm, qs, keywords.synthetic_keywords(), keywords.LENSES, sample_mode="all")
    units["keywords"] = per_question(hits)
    counting = [s for s in samples if s.task == "object_count"][:per_task]
    third = fm.n_layers // 3
    shares, _ = integration.word_attention(fm, counting, range(third, 2 * third), swap=True)
    units["attention"] = per_question(shares, count=len(counting))
    effective = {f: tuple(range(4, 9)) for f in pathways.EFFECTIVE_FLOWS}  # any cut: Table 3's work is the same
    table3 = pathways.run_pathways(fm, qs, effective, progress=False)
    units["table3"] = per_question(table3) + per_question(table3, "baseline_s")
    tokens, seconds = 0, 0.0
    for s in qs[:3]:
        prepared = fm.prepare_sample(s)
        sync()
        t0 = time.perf_counter()
        text = generate(fm, prepared, None, GENERATED)
        sync()
        seconds += time.perf_counter() - t0
        count = len(fm.tokenizer(text, add_special_tokens=False)["input_ids"])
        if count > GENERATED:
            raise SystemExit(f"the generated text {text[:80]!r} encodes to {count} tokens, more than the {GENERATED} "
                             "generated: the token count would be wrong")
        tokens += max(1, count)
    units["token"] = seconds / tokens
    weights = sum(p.numel() * p.element_size() for p in fm.model.parameters()) / 2**30
    tokens_per_prompt = fm.prepare_sample(qs[0]).layout.n
    del fm
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"what": "seconds of each part of the Rerun page's estimate, measured on a random-weight checkpoint of "
                    f"{VIDEO_LLM}'s shapes (benchmarks/rehearsal.py), per question over {n} questions "
                    f"({per_task} per task; word attention on {len(counting)} object_count questions)",
            "gpu": gpu_name(device), "torch": torch.__version__,
            "shape": VIDEO_LLM,
            "weights_gib": round(weights, 3), "tokens": tokens_per_prompt, "accuracy": accuracy,
            "seconds": {u: round(v, 5) for u, v in units.items()}}


def estimate_check(units: dict, sections: dict, samples, sample_mode: str, work: Path) -> dict:
    """The Rerun page's estimate for the rehearsal's questions (its task sizes, sample mode and measured accuracy)
    from ``units``, beside each page's measured wall time: ``{section: {estimate_s, measured_s, ratio}}``."""
    import shutil

    from flowutils.book import rerun

    results = work / "estimate-inputs"  # the shapes benchmark, with this checkpoint's weights and tokens
    (results / "user_path").mkdir(parents=True, exist_ok=True)
    (results / "shapes").mkdir(exist_ok=True)
    (results / "user_path" / "unit_costs_rehearsal.json").write_text(json.dumps(units))
    shapes = json.loads(next((ROOT / "benchmarks" / "results" / "shapes").glob("model_shapes_*.json")).read_text())
    for row in shapes["results"]:
        if row["model"] == VIDEO_LLM:
            row.update(weights_gib=units["weights_gib"], tokens=units["tokens"])
    (results / "shapes" / "model_shapes_rehearsal.json").write_text(json.dumps(shapes))
    tasks = {}
    for s in samples:
        tasks[s.task] = tasks.get(s.task, 0) + 1
    table = rerun.estimate(VIDEO_LLM, IMAGE_LLM, "synthetic", results_dir=results, sample_mode=sample_mode,
                           accuracy=units["accuracy"], tasks=tasks).set_index("section")
    shutil.rmtree(results)
    out = {}
    for section, row in sections.items():
        if section in table.index and row["returncode"] == 0:
            est = float(table.loc[section, "estimated GPU hours"]) * 3600
            out[section] = {"estimate_s": round(est, 1), "measured_s": row["wall_s"],
                            "measured / estimate": round(row["wall_s"] / est, 3),
                             "within_30pct": abs(est - row["wall_s"]) <= 0.3 * row["wall_s"]}
    return out


def gpu_name(device: str) -> str:
    """The card's short name (``H100``, ``H200``), or ``CPU``: the result files' suffix."""
    import torch

    return torch.cuda.get_device_name().replace("NVIDIA ", "").split()[0] if device == "cuda" else "CPU"


def smoke_site(work: Path) -> Path:
    """A folder whose ``sitecustomize`` switches off the manifests' shape check (``--smoke``'s tiny widths)."""
    site = work / "smoke-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import flowutils.models.loading as loading\n"
                                           "loading.config_mismatches = lambda *args, **kwargs: []\n")
    return site


def run(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode:
        print(log.read_text()[-3000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); log: {log}")
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", type=Path, required=True, help="folder of the rendered benchmark")
    ap.add_argument("--models", type=Path, required=True, help="$FLOWUTILS_MODEL_DIR for the two checkpoints")
    ap.add_argument("--out", type=Path, required=True, help="rehearsal.json, unit_costs_<gpu>.json, logs, notebooks")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rehearsal"), help="the executed notebooks and results")
    ap.add_argument("--sections", nargs="+", default=None)
    ap.add_argument("--vocab", type=Path, nargs="*", default=(), help="more benchmark folders whose words the "
                    "checkpoints' tokenizer must know (a larger one swept later with the same checkpoint)")
    ap.add_argument("--sample-mode", default=None, help="appended to the Rerun page's parameters: random weights "
                    "answer almost nothing correctly, so the paper's 'correct' leaves the pages without questions")
    ap.add_argument("--smoke", action="store_true", help="on the CPU with tiny widths: a check of the steps")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"
    import torch

    from flowutils.book import rerun
    from flowutils.data import load_benchmark

    args.bench, args.models, args.work = args.bench.resolve(), args.models.resolve(), args.work.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        site = smoke_site(args.work)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        runpy.run_path(str(site / "sitecustomize.py"))  # this process too (an earlier sitecustomize may be imported)
    samples = load_benchmark(args.bench, "synthetic")
    words = " ".join(s.question + " " + " ".join(s.candidates)
                     for s in samples + [q for b in args.vocab for q in load_benchmark(b, "synthetic")])
    record_file = args.work / "rehearsal.json"  # kept across calls on one machine
    record = json.loads(record_file.read_text()) if record_file.is_file() else {
        "what": __doc__.split("\n\n")[0].replace("\n", " "), "gpu": gpu_name(device), "smoke": args.smoke,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "questions": len(samples), "sections": {}}

    def save():
        record_file.write_text(json.dumps(record, indent=1))
        (args.out / f"rehearsal_{record['gpu']}.json").write_text(json.dumps(record, indent=1))

    if "write_checkpoints_s" not in record:
        start = time.perf_counter()
        for name, seed in ((VIDEO_LLM, 0), (IMAGE_LLM, 1)):
            write_checkpoint(args.models / name, words, seed, device, args.smoke)
        record["write_checkpoints_s"] = round(time.perf_counter() - start, 1)
        record["validate_s"] = round(run([sys.executable, "-m", "flowutils", "validate", "--manifest", "synthetic",
                                          "--root", str(args.bench), "--no-counts", "--decode-videos"],
                                         args.out / "validate.log"), 1)
        save()
    units_file = args.work / "unit_costs.json"
    if not units_file.is_file():
        units_file.write_text(json.dumps(measure_units(args.models, samples, args.work, device), indent=1))
    units = json.loads(units_file.read_text())
    (args.out / f"unit_costs_{units['gpu']}.json").write_text(json.dumps(units, indent=1))
    print("unit costs", units["seconds"], "accuracy", units["accuracy"], flush=True)
    commands = rerun.commands(VIDEO_LLM, IMAGE_LLM, str(args.bench), "synthetic", str(args.work / "results"),
                              dtype=dtype(device), device=device)
    env = dict(os.environ, FLOWUTILS_MODEL_DIR=str(args.models))
    prefix = dict(line.split("=", 1) for line in commands.splitlines()[:2])
    real, pm = prefix["REAL"].strip('"'), prefix["PM"].strip('"')
    if args.sample_mode:
        real += f" -p sample_mode {args.sample_mode}"
    record["parameters"] = real.replace(str(args.bench), "BENCH").replace(str(args.work / "results"), "RESULTS")
    sections = record["sections"]
    for line in commands.splitlines()[2:]:
        section = line.split("notebooks/")[1].split(".ipynb")[0]
        if (args.sections and section not in args.sections) or sections.get(section, {}).get("returncode") == 0:
            continue
        line = line.replace("$REAL", real).replace("$PM", pm).replace(f"book/{section}.ipynb",
                                                                        str(args.work / f"{section}.ipynb"))
        # peak GPU memory of the notebook's kernel: the device's high-water mark, read by nvidia-smi's sampler
        sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                    "-lms", "200"], stdout=subprocess.PIPE, text=True) if device == "cuda" else None
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        used = []
        if sampler is not None:
            sampler.terminate()
            used = [int(v) for v in sampler.communicate()[0].split() if v.isdigit()]
        sections[section] = {"wall_s": round(wall, 1), "peak_gpu_mib": max(used, default=None),
                             "returncode": proc.returncode}
        if proc.returncode:
            sections[section]["error"] = proc.stderr[-2000:]
        print(section, sections[section], flush=True)
        save()  # after every notebook: a run cut off keeps what it measured
    record["estimate_check"] = estimate_check(units, sections, samples, args.sample_mode or "correct", args.work)
    save()
    notebooks = [p.name for p in args.work.glob("*.ipynb") if p.stem in sections]
    if notebooks:
        subprocess.run(["tar", "czf", str(args.out / "notebooks.tgz"), "-C", str(args.work)] + notebooks, check=True)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
