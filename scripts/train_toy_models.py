"""Train the toy ImageLLM and VideoLLM from scratch (``make toy-models``; a GPU takes about 20 minutes).

Seven steps, each a subcommand, so that a recipe can be swept in parallel on one GPU
(``make toy-models`` runs the shipped recipe):

``data``      render the synthetic training/validation questions and encode them once (``--cache``;
              ``--patch-size`` fixes the vision patch, hence the tokens per frame, of the models
              trained on it), with per-patch object labels for ``vision``; its arguments go into
              the cache (``data.json``) and from there into every stage's record.
``text``      the LM's language-pretraining stand-in: a random-initialised
              LlavaNextVideoForConditionalGeneration answers the benchmark's questions about scenes
              described in words, with up to three objects (:mod:`flowutils.toy.scene_text`), until it binds.
``vision``    the vision tower's pretraining stand-in: name every patch's object colour and shape
              (:mod:`flowutils.toy.vision_pretraining`).
``image``     ImageLLM: single-frame image questions mixed with some text ones (``--text-context``:
              the answer text or a description of the scene stands where the video would be); from
              ``--init`` (the shipped recipe: the ``vision`` model, vision tower frozen) or from scratch
              after ``--text-steps`` of text-only questions.
``video``     VideoLLM: initialised from the ImageLLM, fine-tuned on the five temporal tasks with
              the vision tower frozen (the paper's Video-FT), mixed with some image questions.
``evaluate``  accuracy per task on a held-out split rendered from another seed, with the video
              blanked out too, and per number of objects and of distractors in the scene; written into the model's
              ``training_log.json``.
``manifest``  sha256 of the shipped files and the held-out accuracies -> ``flowutils/manifests/toy_models.yaml``.

Models are saved in fp16 safetensors with their processor and a training log (loss curves,
held-out accuracy during training, arguments, config).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flowutils.toy.models import ToyConfig, build_toy, toy_config_dict  # noqa: E402
from flowutils.toy.scene_text import scene_questions  # noqa: E402
from flowutils.data.synthetic import IMAGE_TASKS, VIDEO_TASKS  # noqa: E402
from flowutils.toy.vision_pretraining import labelled_frames, train_vision  # noqa: E402
from flowutils.toy.training import (  # noqa: E402
    TEXT_CONTEXTS, accuracy_table, encode_all, encoded_prediction_table, heldout_samples, prediction_table, render_samples,
    train)

TEMPLATE = "eval_mvbench"
LM_FIELDS = ("text_layers", "text_hidden", "text_heads", "text_kv_heads", "text_intermediate")


def cmd_data(args):
    t0 = time.time()
    cfg = ToyConfig(patch_size=args.patch_size)
    _, processor = build_toy(cfg)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    # the encoding (video placeholder runs) depends on the model's sizes: the model stages build from it
    (cache / "config.json").write_text(json.dumps(toy_config_dict(cfg)))
    (cache / "data.json").write_text(json.dumps(vars(args)))  # copied into the records of the stages trained on it
    train = dict(seed=args.seed, split="train", workers=args.workers, shard_size=args.shard_size)
    image = render_samples(IMAGE_TASKS, args.image_per_task, **train)
    # object_count, the task that needs the most training, gets its own (larger) number of samples
    video = render_samples(VIDEO_TASKS[:-1], args.video_per_task, **train)
    video += render_samples(VIDEO_TASKS[-1:], args.count_per_task, **train)
    val_image = render_samples(IMAGE_TASKS, args.val_per_task, args.seed, "validation", workers=args.workers)
    val_video = render_samples(VIDEO_TASKS, args.val_per_task, args.seed, "validation", workers=args.workers)
    print(f"rendered in {time.time() - t0:.0f}s", flush=True)
    patches = labelled_frames(image, args.patch_size)
    encoded = {
        "vision": patches,
        **{f"text_{c}": encode_all(processor, TEMPLATE, image + video, text=c) for c in TEXT_CONTEXTS},
        "image": encode_all(processor, TEMPLATE, image), "video": encode_all(processor, TEMPLATE, video),
        "val_image": encode_all(processor, TEMPLATE, val_image), "val_video": encode_all(processor, TEMPLATE, val_video),
    }
    for name in ("val_image", "val_video"):
        encoded[name]["task"] = [s.task for s in (val_image if name == "val_image" else val_video)]
    for name, enc in encoded.items():
        torch.save(enc, cache / f"{name}.pt")
    print(f"encoded in {time.time() - t0:.0f}s", flush=True)


# what the encoding depends on (the processor and the video placeholder runs); the LM sizes are the model's own
ENCODING_FIELDS = ("family", "image_size", "patch_size")


def cache_config(cache, model_config: dict | None = None) -> ToyConfig:
    """The config of a model trained on ``cache``: ``model_config`` (default: the cache's), after
    refusing a model whose processor encodes otherwise than the cache was encoded."""
    cached = json.loads((Path(cache) / "config.json").read_text())
    model_config = model_config or cached
    if any(model_config[k] != cached[k] for k in ENCODING_FIELDS):
        raise ValueError(f"{cache} was encoded for {cached}, the model is {model_config}: rerun the data step "
                         f"(fields that must agree: {ENCODING_FIELDS})")
    return ToyConfig(**model_config)


def data_args(cache) -> dict:
    """The data step's arguments for ``cache`` ({} for a cache written before they were kept)."""
    path = Path(cache) / "data.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_sets(cache, names, device):
    out = {}
    for name in names:
        enc = torch.load(Path(cache) / f"{name}.pt")
        out[name] = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in enc.items()}
    return out


def evaluator(model, processor, val: dict, by=("task",)):
    """Validation accuracies keyed ``task`` (or ``task/objects`` with ``by=("task", "objects")``)."""
    def evaluate():
        acc = {}
        for enc in val.values():
            table = accuracy_table(encoded_prediction_table(model, processor, enc, enc["task"], enc.get("objects")), by=by)
            acc.update(zip(table[list(by)].astype(str).agg("/".join, axis=1), table.accuracy.tolist()))
        return acc
    return evaluate


def save(model, processor, out: Path, record: dict):
    target = Path(out)
    copy.deepcopy(model).half().save_pretrained(target)
    processor.save_pretrained(target)
    (target / "training_log.json").write_text(json.dumps(record, indent=1))
    print(f"saved {target}", flush=True)


def load_model(path, device):
    from transformers import AutoProcessor, LlavaNextVideoForConditionalGeneration

    record = json.loads((Path(path) / "training_log.json").read_text())
    model = LlavaNextVideoForConditionalGeneration.from_pretrained(path, dtype=torch.float32).to(device)
    return model, AutoProcessor.from_pretrained(path), record


def cmd_text(args):
    cfg = ToyConfig(patch_size=args.patch_size, **{f: getattr(args, f) for f in LM_FIELDS if getattr(args, f)})
    model, processor = build_toy(cfg, seed=args.seed)
    model.to(args.device)
    train_set = scene_questions(args.per_task, args.seed, "train", max_objects=args.max_objects)
    enc = {k: v.to(args.device) for k, v in encode_all(processor, TEMPLATE, train_set, text="scene").items()}
    # validation: the binding questions at each number of objects, the count questions as drawn
    val = [q for n in (1, 2, 3) for q in scene_questions(args.val_per_task, args.seed, "validation", n_objects=n,
                                                          tasks=("image_color", "image_shape"))]
    val += scene_questions(args.val_per_task, args.seed, "validation", tasks=("image_count", "object_count"))
    val_enc = {k: v.to(args.device) for k, v in encode_all(processor, TEMPLATE, val, text="scene").items()}
    val_enc["task"], val_enc["objects"] = [q.task for q in val], [len(q.meta["objects"]) for q in val]
    log = train(model, processor, {"scene": (enc, 1.0)}, args.steps, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, noise=0.0, continuation_weight=args.continuation_weight,
                evaluate=evaluator(model, processor, {"scene": val_enc}, by=("task", "objects")), eval_every=args.eval_every, progress=False)
    save(model, processor, args.out, {"config": toy_config_dict(cfg), "template": TEMPLATE, "args": vars(args),
                                      "logs": {"scene_text": log}})


def cmd_vision(args):
    model, processor, record = load_model(args.init, args.device)
    cfg = cache_config(args.cache, record["config"])
    data = load_sets(args.cache, ("vision",), args.device)["vision"]
    log = train_vision(model, processor, data, args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       progress=False)
    save(model, processor, args.out, {"config": toy_config_dict(cfg), "template": TEMPLATE, "args": vars(args),
                                      "earlier_args": [record["args"]] + record.get("earlier_args", []),
                                      "data_args": data_args(args.cache), "logs": {**record["logs"], "vision": log}})


def cmd_image(args):
    if args.init:  # from a saved model: the vision stage's, or an ImageLLM for a further stage (fresh schedule)
        model, processor, record = load_model(args.init, args.device)
        cfg = cache_config(args.cache, record["config"])
        logs = dict(record["logs"])
        earlier = [record["args"]] + record.get("earlier_args", [])
    else:
        cfg = cache_config(args.cache)
        model, processor = build_toy(cfg, seed=args.seed)
        model.to(args.device)
        logs, earlier = {}, []
    sets = load_sets(args.cache, (f"text_{args.text_context}", "image", "val_image", "val_video"), args.device)
    sets["text"] = sets.pop(f"text_{args.text_context}")
    evaluate = evaluator(model, processor, {k: sets[k] for k in ("val_image", "val_video")})
    common = dict(batch_size=args.batch_size, lr=args.lr, noise=args.noise, continuation_weight=args.continuation_weight,
                  evaluate=evaluate, eval_every=args.eval_every, progress=False)
    stage = len(earlier)
    if args.text_steps:
        logs[f"text_{stage}"] = train(model, processor, {"text": (sets["text"], 1.0)}, args.text_steps, seed=args.seed, **common)
    mix = {"image": (sets["image"], 1.0)}
    if args.text_mix:
        mix["text"] = (sets["text"], args.text_mix)
    logs[f"image_{stage}"] = train(model, processor, mix, args.image_steps, seed=args.seed + 1 + stage,
                                   freeze_vision=args.freeze_vision, **common)
    save(model, processor, args.out, {"config": toy_config_dict(cfg), "template": TEMPLATE, "args": vars(args),
                                      "earlier_args": earlier, "data_args": data_args(args.cache), "logs": logs})


def cmd_video(args):
    model, processor, record = load_model(args.init, args.device)
    cache_config(args.cache, record["config"])
    sets = load_sets(args.cache, ("video", "image", "val_image", "val_video"), args.device)
    evaluate = evaluator(model, processor, {k: sets[k] for k in ("val_image", "val_video")})
    mix = {"video": (sets["video"], 1.0)}
    if args.image_mix:
        mix["image"] = (sets["image"], args.image_mix)
    log = train(model, processor, mix, args.video_steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed + 2,
                freeze_vision=True, noise=args.noise, continuation_weight=args.continuation_weight,
                evaluate=evaluate, eval_every=args.eval_every, progress=False)
    save(model, processor, args.out, {"config": record["config"], "template": TEMPLATE, "init": str(args.init),
                                      "image_args": [record["args"]] + record.get("earlier_args", []), "args": vars(args),
                                      "data_args": data_args(args.cache), "logs": {**record["logs"], "video": log}})


def cmd_evaluate(args):
    model, processor, record = load_model(args.model, args.device)
    preds = {name: prediction_table(model, processor, TEMPLATE, samples, device=args.device)
             for name, samples in heldout_samples(args.n_per_task, args.seed, "test", args.workers).items()}
    acc = {name: accuracy_table(p).to_dict("records") for name, p in preds.items()}
    # binding shows in the questions about one of several objects, and with distractors in the scene
    by = {key: {name: accuracy_table(preds[name][preds[name].objects > 0], by=("task", key)).to_dict("records")
                for name in ("image", "video")} for key in ("objects", "distractors")}
    print(json.dumps(acc), flush=True)
    record["heldout"] = {"seed": args.seed, "split": "test", "n_per_task": args.n_per_task, "accuracy": acc,
                         "by_objects": by["objects"], "by_distractors": by["distractors"]}
    (Path(args.model) / "training_log.json").write_text(json.dumps(record, indent=1))


MANIFEST_FILES = ("model.safetensors", "config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json")


def cmd_manifest(args):
    import yaml

    from flowutils.data.manifests import MANIFEST_DIR, sha256

    models = {}
    for name, role in (("toy-imagellm", "ImageLLM"), ("toy-videollm", "VideoLLM (Video-FT of toy-imagellm)")):
        path = Path(args.models) / name
        record = json.loads((path / "training_log.json").read_text())
        held = record["heldout"]
        models[name] = {
            "role": role, "class": "LlavaNextVideoForConditionalGeneration", "path": f"models/{name}",
            "sha256": {f: sha256(path / f) for f in MANIFEST_FILES},
            "heldout": {"seed": held["seed"], "split": held["split"], "n_per_task": held["n_per_task"],
                        "accuracy": {split: {r["task"]: r["accuracy"] for r in rows}
                                     for split, rows in held["accuracy"].items()},
                        "chance": {r["task"]: r["chance"] for rows in held["accuracy"].values() for r in rows}},
        }
    spec = {"name": "toy_models", "title": "Toy ImageLLM and VideoLLM trained on the synthetic benchmark",
            "source": "trained by scripts/train_toy_models.py (make toy-models) on a GPU; shipped in models/",
            "licence": "same licence as the project", "precision": "float16 safetensors",
            "verify": "flowutils.models.load(name) checks every sha256 below before loading",
            "models": models}
    (MANIFEST_DIR / "toy_models.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, width=110))
    print(f"wrote {MANIFEST_DIR / 'toy_models.yaml'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data")
    d.add_argument("--cache", default="models/cache")
    d.add_argument("--image-per-task", type=int, default=20000)
    d.add_argument("--video-per-task", type=int, default=8000)
    d.add_argument("--count-per-task", type=int, default=96000, help="samples of object_count")
    d.add_argument("--val-per-task", type=int, default=100)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--shard-size", type=int, default=24000,
                   help="training samples per rendering job: a task's further samples come from further streams")
    d.add_argument("--patch-size", type=int, default=ToyConfig.patch_size,
                   help="vision patch of the models to train, in pixels (4: 64 tokens per frame instead of 16)")
    # defaults: the shipped recipe, where the Makefile's toy-models target passes no flag
    for name, steps, batch, cont in (("image", 5000, 256, 1.0), ("video", 4500, 128, 0.5)):
        p = sub.add_parser(name)
        p.add_argument("--cache", default="models/cache")
        p.add_argument("--out", default=f"models/toy-{name}llm")
        p.add_argument(f"--{name}-steps", type=int, default=steps)
        p.add_argument("--batch-size", type=int, default=batch)
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--noise", type=float, default=0.03)
        p.add_argument("--continuation-weight", type=float, default=cont)
        p.add_argument("--eval-every", type=int, default=500)
        p.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("text")
    t.add_argument("--patch-size", type=int, default=ToyConfig.patch_size, help="as the data step's (checked by the image step)")
    t.add_argument("--out", default="models/cache/toy-textlm")
    t.add_argument("--steps", type=int, default=8000)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--continuation-weight", type=float, default=1.0)
    t.add_argument("--per-task", type=int, default=50000, help="scene questions per task")
    t.add_argument("--val-per-task", type=int, default=200)
    t.add_argument("--max-objects", type=int, default=3, help="objects in a colour or shape question's scene: 1 to this")
    t.add_argument("--eval-every", type=int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    for f in LM_FIELDS:
        t.add_argument(f"--{f.replace('_', '-')}", type=int, default=None, help="LM size (default: ToyConfig's)")
    v = sub.add_parser("vision")
    v.add_argument("--cache", default="models/cache")
    v.add_argument("--init", default="models/cache/toy-textlm", help="the model whose vision tower to pretrain")
    v.add_argument("--out", default="models/cache/toy-vision")
    v.add_argument("--steps", type=int, default=2000)
    v.add_argument("--batch-size", type=int, default=256)
    v.add_argument("--lr", type=float, default=1e-3)
    v.add_argument("--seed", type=int, default=0)
    image, video = sub.choices["image"], sub.choices["video"]
    image.add_argument("--text-steps", type=int, default=1500)
    image.add_argument("--text-mix", type=float, default=0.3, help="weight of text batches next to image batches")
    image.add_argument("--init", default=None, help="continue a saved ImageLLM (a further stage, fresh schedule)")
    image.add_argument("--text-context", choices=sorted(TEXT_CONTEXTS), default="answer",
                       help="what text questions hold where the video would be: the answer text, or a "
                            "description of every object in the scene (flowutils.data.synthetic.describe)")
    image.add_argument("--freeze-vision", action="store_true", help="keep the (pretrained) vision tower as it is")
    video.add_argument("--init", default="models/toy-imagellm")
    video.add_argument("--image-mix", type=float, default=0.2, help="weight of image batches next to video batches")
    e = sub.add_parser("evaluate")
    e.add_argument("--model", required=True)
    e.add_argument("--n-per-task", type=int, default=200)
    e.add_argument("--seed", type=int, default=1, help="held-out: another seed than training (0)")
    m = sub.add_parser("manifest")
    m.add_argument("--models", default="models")
    args = ap.parse_args()
    {"manifest": cmd_manifest, "data": cmd_data, "text": cmd_text, "vision": cmd_vision, "image": cmd_image, "video": cmd_video, "evaluate": cmd_evaluate}[args.command](args)


if __name__ == "__main__":
    main()
