"""Train the toy ImageLLM and VideoLLM from scratch (``make toy-models``; a GPU takes minutes).

ImageLLM: a random-initialised LlavaNextVideoForConditionalGeneration trained on the four
single-frame image tasks. VideoLLM: initialised from the ImageLLM, fine-tuned on the five
temporal video tasks with the vision tower frozen. Both are saved in fp16 safetensors with
their processor, a training log (loss curves) and held-out accuracies; then
``scripts/update_model_manifest.py`` records their sha256 in ``data_manifests/toy_models.yaml``.
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
from flowutils.models.toy import ToyConfig, build_toy, toy_config_dict  # noqa: E402
from flowutils.synthetic import IMAGE_TASKS, VIDEO_TASKS  # noqa: E402
from flowutils.training import accuracy_table, render_samples, train  # noqa: E402

TEMPLATE = "eval_mvbench"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="models")
    ap.add_argument("--image-steps", type=int, default=2000)
    ap.add_argument("--video-steps", type=int, default=3500)
    ap.add_argument("--train-per-task", type=int, default=5000)
    ap.add_argument("--eval-per-task", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--continuation-weight", type=float, default=0.5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    args = ap.parse_args()
    out = Path(args.out)
    t0 = time.time()
    cfg = ToyConfig()
    print("rendering training and held-out data ...", flush=True)
    img_train = render_samples(IMAGE_TASKS, args.train_per_task, args.seed, "train", workers=args.workers)
    vid_train = render_samples(VIDEO_TASKS, args.train_per_task, args.seed, "train", workers=args.workers)
    img_test = render_samples(IMAGE_TASKS, args.eval_per_task, args.seed, "test", workers=args.workers)
    vid_test = render_samples(VIDEO_TASKS, args.eval_per_task, args.seed, "test", workers=args.workers)
    blank_test = render_samples(VIDEO_TASKS, args.eval_per_task, args.seed, "test", blank=True, workers=args.workers)
    print(f"rendered in {time.time() - t0:.0f}s", flush=True)

    def finish(name, m, log):
        acc = {split: accuracy_table(m, processor, TEMPLATE, samples, 256, args.device).to_dict("records")
               for split, samples in (("image", img_test), ("video", vid_test), ("video_blank", blank_test))}
        print(name, json.dumps(acc), flush=True)
        target = out / name
        copy.deepcopy(m).half().save_pretrained(target)
        processor.save_pretrained(target)
        (target / "training_log.json").write_text(json.dumps(
            {"config": toy_config_dict(cfg), "steps": log, "template": TEMPLATE, "args": vars(args),
             "accuracy_in_memory_frames": acc}, indent=1))

    model, processor = build_toy(cfg, seed=args.seed)
    image_log = train(model, processor, TEMPLATE, img_train, args.image_steps, args.batch_size, args.lr, args.seed,
                      device=args.device, progress=False, continuation_weight=args.continuation_weight)
    print("ImageLLM", image_log[-1], flush=True)
    finish("toy-imagellm", model, image_log)
    if args.video_steps == 0:
        return
    video = copy.deepcopy(model)
    video_log = train(video, processor, TEMPLATE, vid_train, args.video_steps, args.batch_size, args.lr / 2,
                      args.seed + 1, freeze_vision=True, device=args.device, progress=False,
                      continuation_weight=args.continuation_weight)
    print("VideoLLM", video_log[-1], flush=True)
    finish("toy-videollm", video, video_log)
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
