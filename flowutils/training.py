"""Training and evaluating the toy Image/Video LLMs on the synthetic benchmark.

The objective is the paper's readout: the next token after ``Best option:(`` must be the
gold option letter (cross-entropy at the last prompt position). The ImageLLM is trained
from scratch on single-frame image questions; the VideoLLM starts from it and is
fine-tuned on the five temporal tasks with the vision tower frozen, as the paper's
Video-FT models were. Evaluation uses the same readout (argmax over the whole vocabulary).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from .data import sample_frames
from .prompt import build_prompt, prompt_text
from .synthetic import RenderConfig, generate


def _render(args):
    task, n, seed, split, num_frames, blank = args
    out = []
    for s in generate(task, n, seed, split, RenderConfig()):
        s.frames = sample_frames(s.frames, num_frames)
        if blank:
            s.frames = np.full_like(s.frames, 128)
        out.append(s)
    return out


def render_samples(tasks, n_per_task: int, seed: int, split: str, num_frames: int = 8, blank: bool = False,
                   workers: int = 1) -> list:
    """Rendered samples (frames already sampled to ``num_frames``); ``blank`` greys every frame out."""
    jobs = [(t, n_per_task, seed, split, num_frames, blank) for t in tasks]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return [s for chunk in pool.map(_render, jobs) for s in chunk]
    return [s for job in jobs for s in _render(job)]


def encode(processor, template, samples, device=None):
    """Batch inputs, the index of each sequence's last real token, and the gold letter ids."""
    texts = [prompt_text(build_prompt(template, "<video>", s.question, s.candidates)) for s in samples]
    frames = [s.frames for s in samples]
    if len({len(f) for f in frames}) > 1:
        raise ValueError("a batch must have one frame count (image and video questions go in separate batches)")
    enc = processor(text=texts, videos=frames, return_tensors="pt", padding=True)
    last = enc["attention_mask"].sum(1) - 1
    gold = torch.tensor(processor.tokenizer.convert_tokens_to_ids([chr(65 + s.answer_index) for s in samples]))
    if device is not None:
        enc = {k: v.to(device) for k, v in enc.items()}
        last, gold = last.to(device), gold.to(device)
    return enc, last, gold


def _last_logits(model, enc, last):
    logits = model(**enc).logits
    return logits[torch.arange(len(last), device=logits.device), last].float()


@torch.no_grad()
def predict(model, processor, template, samples, batch_size: int = 64, device=None) -> np.ndarray:
    """Index of the predicted option for each sample (-1 when the argmax is not an option letter)."""
    model.eval()
    preds = []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        enc, last, _ = encode(processor, template, chunk, device)
        if device is not None:
            enc["pixel_values_videos"] = enc["pixel_values_videos"].to(next(model.parameters()).dtype)
        top = _last_logits(model, enc, last).argmax(-1).cpu().tolist()
        for s, t in zip(chunk, top):
            letters = processor.tokenizer.convert_tokens_to_ids([chr(65 + k) for k in range(len(s.candidates))])
            preds.append(letters.index(t) if t in letters else -1)
    return np.array(preds)


def accuracy_table(model, processor, template, samples, batch_size: int = 64, device=None):
    """Accuracy per task (pandas DataFrame with task, n, accuracy %, chance %)."""
    import pandas as pd

    by_task = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    rows = []
    for task, ss in by_task.items():
        pred = predict(model, processor, template, ss, batch_size, device)
        gold = np.array([s.answer_index for s in ss])
        rows.append({"task": task, "n": len(ss), "accuracy": round(100 * float((pred == gold).mean()), 1),
                     "chance": round(100 / len(ss[0].candidates), 1)})
    return pd.DataFrame(rows)


def encode_all(processor, template, samples, chunk: int = 512) -> dict:
    """Encode ``samples`` once (one frame count) into padded tensors for training.

    Each sequence is the prompt followed by the answer continuation ``X) answer`` (the letter
    is the readout; the words after it give the visual concepts a direct training signal).
    ``last`` is the index of the prompt's last token (where the letter is predicted) and
    ``n_target`` the number of continuation tokens.
    """
    pad = processor.tokenizer.pad_token_id
    out = {"input_ids": [], "attention_mask": [], "pixel_values_videos": [], "last": [], "n_target": []}
    for i in range(0, len(samples), chunk):
        part = samples[i:i + chunk]
        enc, last, _ = encode(processor, template, part)
        texts = [prompt_text(build_prompt(template, "<video>", s.question, s.candidates))
                 + f"{chr(65 + s.answer_index)}) {s.answer}" for s in part]
        full = processor(text=texts, videos=[s.frames for s in part], return_tensors="pt", padding=True)
        out["input_ids"].append(full["input_ids"])
        out["attention_mask"].append(full["attention_mask"])
        out["pixel_values_videos"].append(enc["pixel_values_videos"].to(torch.bfloat16))
        out["last"].append(last)
        out["n_target"].append(full["attention_mask"].sum(1) - 1 - last)
    width = max(t.shape[1] for t in out["input_ids"])
    for k, value in (("input_ids", pad), ("attention_mask", 0)):
        out[k] = [torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value) for t in out[k]]
    return {k: torch.cat(v) for k, v in out.items()}


def train(model, processor, template, train_samples, steps: int, batch_size: int = 64, lr: float = 1e-3,
          seed: int = 0, freeze_vision: bool = False, device="cpu", log_every: int = 50, noise: float = 0.03,
          progress: bool = True, continuation_weight: float = 0.5) -> list[dict]:
    """Train on ``train_samples`` for ``steps`` AdamW steps (cosine schedule, 5% warm-up); returns the loss log.

    The samples are encoded once; each batch draws from one frame count (images and videos
    are not mixed) and adds Gaussian noise of std ``noise`` to the normalised pixels, so the
    model does not depend on the exact pixel values that video compression changes.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    if freeze_vision:
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    groups = {}
    for s in train_samples:
        groups.setdefault(len(s.frames), []).append(s)
    data = [{k: v.to(device) for k, v in encode_all(processor, template, g).items()} for g in groups.values()]
    sizes = torch.tensor([len(d["last"]) for d in data], dtype=torch.float)
    log, running, t0 = [], [], time.time()
    cuda = str(device).startswith("cuda")
    for step in tqdm(range(steps), disable=not progress, desc="train"):
        d = data[int(torch.multinomial(sizes, 1, generator=gen))]
        idx = torch.randint(0, len(d["last"]), (batch_size,), generator=gen).to(device)
        width = int(d["attention_mask"][idx].sum(1).max())
        ids = d["input_ids"][idx, :width]
        enc = {"input_ids": ids, "attention_mask": d["attention_mask"][idx, :width]}
        pixels = d["pixel_values_videos"][idx].float()
        enc["pixel_values_videos"] = pixels + noise * torch.randn(pixels.shape, generator=gen).to(device)
        last, n_target = d["last"][idx], d["n_target"][idx]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(**enc).logits.float()
        rows = torch.arange(batch_size, device=ids.device)
        letter_logits, gold = logits[rows, last], ids[rows, last + 1]
        # continuation after the letter: positions last+1 .. last+n_target-1 predict the next tokens
        pos = last[:, None] + 1 + torch.arange(width, device=ids.device)[None]
        valid = pos < (last + n_target)[:, None]
        pos = pos.clamp(max=width - 2)
        cont = torch.nn.functional.cross_entropy(logits[rows[:, None], pos][valid], ids[rows[:, None], pos + 1][valid])
        loss = torch.nn.functional.cross_entropy(letter_logits, gold) + continuation_weight * cont
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running.append(torch.stack([loss.detach(), (letter_logits.argmax(-1) == gold).float().mean()]))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            l, a = torch.stack(running).mean(0).tolist()
            log.append({"step": step + 1, "loss": round(l, 4), "train_acc": round(a, 4),
                        "lr": sched.get_last_lr()[0], "seconds": round(time.time() - t0, 1)})
            running = []
    model.eval()
    return log
