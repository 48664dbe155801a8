"""Rehearse the real user's path on a GPU: the section notebooks, run by papermill as the "Rerun on a real
model" page prints them, on random-weight checkpoints of the paper's 7B shapes.

Two checkpoints are written in PLLaVA's legacy on-disk layout (``language_model.model.*``,
``vision_tower.*``, ``multi_modal_projector.*`` in safetensors shards, a LLaVA ``config.json``
with the real shapes: CLIP ViT-L/14 at 336 px, a Llama-2-7B language model, vocabulary 32064,
``<image>`` = 32000), under the model manifests' names in ``$FLOWUTILS_MODEL_DIR``:
``llava-next-7b-video-ft`` (the VideoLLM) and ``llava-v1.6-vicuna-7b`` (its ImageLLM base). Their
tokenizer is a word-level one built from local classes over the benchmark's words (no hub), padded
so that ``<image>`` has the real id. Every ``config.json`` carries ``"flowutils_random_weights": true``.

The benchmark is a TVBench-format one (``json/<task>.json`` + mp4 videos) rendered by
``python -m flowutils data`` at the real resolution, checked with ``python -m flowutils validate
--decode-videos``. Then each section notebook runs as the Rerun page's command says (the paper's
protocol comes from the manifests), and its wall time and peak GPU memory are written to
``--out/rehearsal.json``, beside the Rerun page's estimate for the same questions.

    python benchmarks/rehearsal.py --bench /tmp/bench --models /tmp/models --out $OUT

Random weights make every verdict of these pages meaningless: this measures the path, not the paper.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VIDEO_LLM, IMAGE_LLM = "llava-next-7b-video-ft", "llava-v1.6-vicuna-7b"
IMAGE_TOKEN_ID, VOCAB = 32000, 32064
# LLaVA-NeXT-7B-Video-FT's shapes: CLIP ViT-L/14 at 336 px, Llama-2-7B
VISION = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
          "num_attention_heads": 16, "image_size": 336, "patch_size": 14, "projection_dim": 768}
TEXT = {"model_type": "llama", "vocab_size": VOCAB, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
        "tie_word_embeddings": False}


def tokenizer(words: str):
    """A word-level fast tokenizer over the toy vocabulary and ``words``, with ``<image>`` at the real id 32000."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from flowutils.toy.models import build_tokenizer

    vocab = {t: i for t, i in build_tokenizer(words).get_vocab().items() if t not in ("<image>", "<video>")}
    used = set(vocab.values())
    vocab.update({f"<unused{i}>": i for i in range(IMAGE_TOKEN_ID) if i not in used})
    vocab["<image>"] = IMAGE_TOKEN_ID
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(r"<image>", behavior="isolated"),
                                                 pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return fast


def write_checkpoint(path: Path, words: str, seed: int, device: str = "cuda") -> None:
    """A random-weight PLLaVA-layout checkpoint of LLaVA-NeXT-7B-Video-FT's shapes (bf16 safetensors shards)."""
    import torch
    import transformers
    from safetensors.torch import save_file

    tok = tokenizer(words)
    config = transformers.LlavaConfig(
        vision_config=VISION, text_config={**TEXT, "pad_token_id": tok.pad_token_id},
        image_token_index=IMAGE_TOKEN_ID, vision_feature_layer=-2, vision_feature_select_strategy="default",
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    with torch.device(device):
        model = transformers.LlavaForConditionalGeneration(config).to(torch.bfloat16).eval()
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


def fixed_costs(models: Path, samples) -> dict:
    """What the Rerun page's estimate leaves out, measured on the 7B checkpoint: loading it (seconds) and preparing
    one question (video decoding, processor, vision tower, prompt; seconds, mean over ``samples``)."""
    import torch

    from flowutils.models import load

    os.environ["FLOWUTILS_MODEL_DIR"] = str(models)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fm = load(VIDEO_LLM, dtype=torch.bfloat16, device="cuda")
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    fm.prepare_sample(samples[0])  # warm-up: CUDA kernels of the vision tower
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in samples[1:]:
        fm.prepare_sample(s)
    torch.cuda.synchronize()
    prepare_s = (time.perf_counter() - t0) / (len(samples) - 1)
    del fm
    torch.cuda.empty_cache()
    return {"load_s": round(load_s, 2), "prepare_s_per_question": round(prepare_s, 4), "prepared": len(samples) - 1}


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
    ap.add_argument("--out", type=Path, required=True, help="rehearsal.json, the logs and the executed notebooks (tgz)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rehearsal"), help="the executed notebooks and results")
    ap.add_argument("--sections", nargs="+", default=None)
    ap.add_argument("--sample-mode", default=None, help="appended to the Rerun page's parameters: random weights "
                    "answer almost nothing correctly, so the paper's 'correct' leaves the pages without questions")
    args = ap.parse_args()
    import torch

    from flowutils.book import rerun
    from flowutils.data import load_benchmark

    args.bench, args.models, args.work = args.bench.resolve(), args.models.resolve(), args.work.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    samples = load_benchmark(args.bench, "synthetic")
    words = " ".join(s.question + " " + " ".join(s.candidates) for s in samples)
    timings = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "questions": len(samples)}
    start = time.perf_counter()
    for name, seed in ((VIDEO_LLM, 0), (IMAGE_LLM, 1)):
        write_checkpoint(args.models / name, words, seed)
    timings["write_checkpoints_s"] = round(time.perf_counter() - start, 1)
    timings["fixed_costs"] = fixed_costs(args.models, samples[:9])
    print("fixed costs", timings["fixed_costs"], flush=True)
    timings["validate_s"] = round(run([sys.executable, "-m", "flowutils", "validate", "--manifest", "synthetic",
                                       "--root", str(args.bench), "--no-counts", "--decode-videos"],
                                      args.out / "validate.log"), 1)
    commands = rerun.commands(VIDEO_LLM, IMAGE_LLM, str(args.bench), "synthetic", str(args.work / "results"))
    env = dict(os.environ, FLOWUTILS_MODEL_DIR=str(args.models))
    prefix = dict(line.split("=", 1) for line in commands.splitlines()[:2])
    real, pm = prefix["REAL"].strip('"'), prefix["PM"].strip('"')
    if args.sample_mode:
        real += f" -p sample_mode {args.sample_mode}"
    timings["parameters"] = real.replace(str(args.bench), "BENCH").replace(str(args.work / "results"), "RESULTS")
    sections = {}
    for line in commands.splitlines()[2:]:
        section = line.split("notebooks/")[1].split(".ipynb")[0]
        if args.sections and section not in args.sections:
            continue
        line = line.replace("$REAL", real).replace("$PM", pm).replace(f"book/{section}.ipynb",
                                                                        str(args.work / f"{section}.ipynb"))
        # peak GPU memory of the notebook's kernel: the device's high-water mark, read by nvidia-smi's sampler
        sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                    "-lms", "200"], stdout=subprocess.PIPE, text=True)
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        sampler.terminate()
        used = [int(v) for v in sampler.communicate()[0].split() if v.isdigit()]
        sections[section] = {"wall_s": round(wall, 1), "peak_gpu_mib": max(used, default=None),
                             "returncode": proc.returncode}
        if proc.returncode:
            sections[section]["error"] = proc.stderr[-2000:]
        print(section, sections[section], flush=True)
        timings["sections"] = sections  # written after every notebook: a run cut off keeps what it measured
        (args.out / "rehearsal.json").write_text(json.dumps(timings, indent=1))
    est = rerun.estimate(VIDEO_LLM, IMAGE_LLM, "tvbench")  # per question: the estimator reads task sizes from it
    per_question = {r["section"]: r["estimated GPU hours"] * 3600 / r["questions"] for _, r in est.iterrows()}
    for section, row in sections.items():
        if section in per_question:
            row["estimate_s"] = round(per_question[section] * len(samples), 1)
    (args.out / "rehearsal.json").write_text(json.dumps(timings, indent=1))
    subprocess.run(["tar", "czf", str(args.out / "notebooks.tgz"), "-C", str(args.work)]
                   + [p.name for p in args.work.glob("*.ipynb")], check=True)
    print(json.dumps(timings, indent=1))


if __name__ == "__main__":
    main()
