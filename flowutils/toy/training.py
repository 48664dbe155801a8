"""Training and evaluating the toy Image/Video LLMs on the synthetic benchmark.

The objective is the paper's readout: the next token after ``Best option:(`` must be the
gold option letter (cross-entropy at the last prompt position), plus a weighted loss on
the answer continuation ``X) answer`` (the words give the visual concepts a direct signal).

Three kinds of training data, mixed by weight (:func:`train`):

* ``text``: text-only questions. The video slot holds text (:data:`TEXT_CONTEXTS`): the
  answer itself or a description of the scene (:func:`flowutils.data.synthetic.describe`: every
  object with its colour and shape or motion), so the model keeps the generic
  multiple-choice skill (find the option the context supports, read out its letter). The
  shipped recipe's LM learns that skill, and binding, first from :mod:`flowutils.toy.scene_text`,
  and its vision tower from :mod:`flowutils.toy.vision_pretraining`, as the real ImageLLMs start
  from a pretrained LLM and a pretrained vision encoder.
* ``image``: single-frame image questions (the ImageLLM's instruction tuning).
* ``video``: the five temporal tasks (the VideoLLM's Video-FT, vision tower frozen).

Evaluation: :func:`prediction_table` (one row per question) and :func:`accuracy_table` (per
task, or per task and objects in the scene). Sets are encoded once (:func:`encode_all`): token ids padded to one width and frames
kept as uint8, normalised on the device per batch exactly as the processor would
(:func:`pixel_values`, tested against the processor).
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from ..data.video import sample_frames
from ..inputs.prompt import build_prompt, prompt_text
from ..models.families import prompt_template
from ..data.synthetic import IMAGE_TASKS, VIDEO_TASKS, RenderConfig, describe, distractors, generate
from ..data.video import NUM_FRAMES


def _render(args):
    task, n, seed, split, num_frames, shard = args
    out = []
    for s in generate(task, n, seed, split, RenderConfig(), shard):
        s.frames = sample_frames(s.frames, num_frames)
        out.append(s)
    return out


def render_samples(tasks, n_per_task: int, seed: int, split: str, num_frames: int = NUM_FRAMES, workers: int = 1,
                   shard_size: int | None = None) -> list:
    """Rendered samples (frames already sampled to ``num_frames``), task by task.

    ``shard_size``: a task's samples come in pieces of at most this many, each from its own
    stream (:func:`~flowutils.data.synthetic.task_rng`'s shards 0, 1, ...), rendered in parallel; the
    first ``shard_size`` samples are those of the unsharded stream. ``None``: one stream per task.
    """
    size = shard_size or max(n_per_task, 1)
    jobs = [(t, min(size, n_per_task - start), seed, split, num_frames, j)
            for t in tasks for j, start in enumerate(range(0, n_per_task, size))]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return [s for part in pool.map(_render, jobs) for s in part]
    return [s for job in jobs for s in _render(job)]


def blanked(samples) -> list:
    """Copies of ``samples`` with every frame grey: the no-shortcut check (the question and
    options stay, the pixels carry nothing)."""
    return [dataclasses.replace(s, frames=np.full_like(s.frames, 128)) for s in samples]


def heldout_samples(n_per_task: int, seed: int, split: str, workers: int = 1) -> dict:
    """The toy models' held-out inputs: ``{"image", "video", "video_blanked"}`` -> samples
    (image tasks, temporal tasks, and the temporal tasks with grey frames)."""
    video = render_samples(VIDEO_TASKS, n_per_task, seed, split, workers=workers)
    return {"image": render_samples(IMAGE_TASKS, n_per_task, seed, split, workers=workers), "video": video,
            "video_blanked": blanked(video)}


# what the text-only pretraining stand-in puts where the video would be
TEXT_CONTEXTS = {"answer": lambda sample: sample.answer, "scene": describe}


def _prompt(template, sample, text: str | None) -> str:
    if text is not None and text not in TEXT_CONTEXTS:
        raise ValueError(f"unknown text context {text!r}; valid: {sorted(TEXT_CONTEXTS)} or None (the video)")
    video = TEXT_CONTEXTS[text](sample) if text else "<video>"
    template = prompt_template(template) if isinstance(template, str) else template
    return prompt_text(build_prompt(template, video, sample.question, sample.candidates))


def continuation(sample) -> str:
    """The answer continuation trained after the letter: ``B) Red.``."""
    return f"{chr(65 + sample.answer_index)}) {sample.answer}"


def encode_all(processor, template, samples, text: str | None = None) -> dict:
    """Encode ``samples`` (one frame count) for training and evaluation.

    ``text``: ``None`` puts the video in the prompt; a key of :data:`TEXT_CONTEXTS` puts that
    text in its place (text-only questions). Returns ``input_ids``/``attention_mask``
    ``[N, width]`` (prompt + continuation, right padded), ``last`` ``[N]`` (index of the
    prompt's last token: where the letter is predicted), ``n_target`` ``[N]`` (continuation
    tokens), ``gold`` ``[N]`` (answer index), ``n_options`` ``[N]`` and, for videos, ``frames``
    ``[N, time, 3, H, W]`` uint8.
    """
    tok = processor.tokenizer
    prompts = [_prompt(template, s, text) for s in samples]
    if text is None:
        frames = [s.frames for s in samples]
        if len({f.shape for f in frames}) > 1:
            raise ValueError("encode_all needs one frame count and size per set (images and videos go in separate sets)")
        # the processor expands <video> to one run of placeholder tokens, the same for every sample of the set
        run = int((processor(text=prompts[0], videos=frames[:1], return_tensors="pt")["input_ids"] == tok.convert_tokens_to_ids("<video>")).sum())
        prompts = [p.replace("<video>", "<video>" * run) for p in prompts]
    full = tok([p + continuation(s) for p, s in zip(prompts, samples)], return_tensors="pt", padding=True)
    n_prompt = torch.tensor([len(ids) for ids in tok(prompts)["input_ids"]])
    n_real = full["attention_mask"].sum(1)
    out = {"input_ids": full["input_ids"], "attention_mask": full["attention_mask"], "last": n_prompt - 1,
           "n_target": n_real - n_prompt, "gold": torch.tensor([s.answer_index for s in samples]),
           "n_options": torch.tensor([len(s.candidates) for s in samples])}
    if text is None:
        out["frames"] = torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).contiguous()
    return out


def pixel_values(frames: torch.Tensor, processor, dtype=torch.float32) -> torch.Tensor:
    """``[N, time, 3, H, W]`` uint8 -> the video processor's normalised ``pixel_values_videos``.

    Frames must already have the processor's size (the synthetic benchmark renders them so).
    """
    vp = processor.video_processor
    mean = torch.tensor(vp.image_mean, device=frames.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(vp.image_std, device=frames.device).view(1, 1, 3, 1, 1)
    return ((frames.float() * vp.rescale_factor - mean) / std).to(dtype)


def noisy_pixel_values(frames: torch.Tensor, processor, noise: float, gen=None) -> torch.Tensor:
    """:func:`pixel_values` plus Gaussian noise of std ``noise`` (video compression moves pixel values)."""
    px = pixel_values(frames, processor)
    return px + noise * torch.randn(px.shape, generator=gen).to(px.device) if noise else px


def _inputs(enc: dict, idx, processor, noise: float = 0.0, gen=None) -> dict:
    width = int(enc["attention_mask"][idx].sum(1).max())
    inputs = {"input_ids": enc["input_ids"][idx, :width], "attention_mask": enc["attention_mask"][idx, :width]}
    if "frames" in enc:
        inputs["pixel_values_videos"] = noisy_pixel_values(enc["frames"][idx], processor, noise, gen)
    return inputs


@torch.no_grad()
def predict_encoded(model, processor, enc: dict, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample of an encoded set: the predicted option (the option letter with the highest
    logit) and whether the argmax over the whole vocabulary is that letter."""
    model.eval()
    letters = torch.tensor(processor.tokenizer.convert_tokens_to_ids([chr(65 + k) for k in range(8)]))
    device = next(model.parameters()).device
    preds, valid = [], []
    for i in range(0, len(enc["last"]), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(enc["last"])), device=enc["last"].device)
        inputs = _inputs(enc, idx, processor)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**inputs).logits
        logits = logits[torch.arange(len(idx), device=logits.device), enc["last"][idx]].float().cpu()
        options = logits[:, letters].masked_fill(torch.arange(8)[None] >= enc["n_options"][idx].cpu()[:, None], -torch.inf)
        preds.append(options.argmax(-1))
        valid.append(letters[preds[-1]] == logits.argmax(-1))
    return torch.cat(preds), torch.cat(valid)


def encoded_prediction_table(model, processor, enc: dict, tasks, objects=None):
    """:func:`prediction_table` of an encoded set (``tasks``: one name per sample; ``objects``:
    objects per sample's scene, default 0)."""
    import pandas as pd

    pred, top = predict_encoded(model, processor, enc)
    return pd.DataFrame({"task": list(tasks), "objects": list(objects) if objects is not None else 0,
                         "n_options": enc["n_options"].tolist(), "gold": enc["gold"].tolist(),
                         "predicted": pred.tolist(), "letter_is_top_token": top.tolist()})


def prediction_table(model, processor, template, samples, text: str | None = None, device=None):
    """One row per sample: task, objects (in the scene, where the ground truth lists them, else
    0), n_options, gold and predicted option index, whether the predicted letter is also the top
    token over the whole vocabulary, and distractors (:func:`flowutils.data.synthetic.distractors`).
    ``text`` as in :func:`encode_all`."""
    import pandas as pd

    by_task = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    parts = []
    for task, ss in by_task.items():
        enc = encode_all(processor, template, ss, text)
        if device is not None:
            enc = {k: v.to(device) for k, v in enc.items()}
        table = encoded_prediction_table(model, processor, enc, [task] * len(ss), [len(s.meta.get("objects", [])) for s in ss])
        parts.append(table.assign(distractors=[distractors(s) for s in ss]))
    return pd.concat(parts, ignore_index=True)


def accuracy_table(predictions, by=("task",)):
    """Accuracy per group of a :func:`prediction_table`: n, accuracy %, chance % and how often
    the predicted option's letter is also the top token over the whole vocabulary (%)."""
    import pandas as pd

    p = predictions.assign(correct=predictions.predicted == predictions.gold, chance=100 / predictions.n_options)
    # text keys (task) keep their order of appearance, numbers (objects) sort
    p = p.assign(**{k: pd.Categorical(p[k], categories=list(dict.fromkeys(p[k]))) for k in by if not pd.api.types.is_numeric_dtype(p[k])})
    table = p.groupby(list(by), observed=True).agg(n=("correct", "size"), accuracy=("correct", "mean"),
                                                chance=("chance", "mean"), letter_is_top_token=("letter_is_top_token", "mean"))
    table[["accuracy", "letter_is_top_token"]] *= 100
    table = table.round(1).reset_index()
    return table.astype({k: str for k in by if isinstance(table[k].dtype, pd.CategoricalDtype)})


def train(model, processor, sets: dict, steps: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
          freeze_vision: bool = False, log_every: int = 50, noise: float = 0.03, continuation_weight: float = 0.5,
          evaluate=None, eval_every: int = 500, progress: bool = True) -> list[dict]:
    """AdamW on encoded sets for ``steps`` steps (cosine schedule, 5% warm-up); returns the log.

    ``sets``: ``{name: (encoded set on the model's device, weight)}``; each step draws one
    set by weight and a batch from it, adding Gaussian noise of std ``noise`` to the
    normalised pixels (video compression changes exact pixel values). ``evaluate()``, if
    given, returns a dict of held-out accuracies, logged every ``eval_every`` steps.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    model.train()
    if freeze_vision:
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    names = list(sets)
    weights = torch.tensor([float(sets[n][1]) for n in names])
    log, running, t0 = [], {}, time.time()
    for step in tqdm(range(steps), disable=not progress, desc="train"):
        name = names[int(torch.multinomial(weights, 1, generator=gen))]
        enc = sets[name][0]
        idx = torch.randint(0, len(enc["last"]), (batch_size,), generator=gen).to(device)
        inputs = _inputs(enc, idx, processor, noise, gen)
        ids = inputs["input_ids"]
        last, n_target = enc["last"][idx], enc["n_target"][idx]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**inputs).logits.float()
        rows = torch.arange(batch_size, device=device)
        letter_logits, gold = logits[rows, last], ids[rows, last + 1]
        # continuation after the letter: positions last+1 .. last+n_target-1 predict the next tokens
        pos = last[:, None] + 1 + torch.arange(ids.shape[1], device=device)[None]
        valid = pos < (last + n_target)[:, None]
        pos = pos.clamp(max=ids.shape[1] - 2)
        cont = torch.nn.functional.cross_entropy(logits[rows[:, None], pos][valid], ids[rows[:, None], pos + 1][valid])
        loss = torch.nn.functional.cross_entropy(letter_logits, gold) + continuation_weight * cont
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        running.setdefault(name, []).append(torch.stack([loss.detach(), (letter_logits.argmax(-1) == gold).float().mean()]))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            entry = {"step": step + 1, "lr": sched.get_last_lr()[0], "seconds": round(time.time() - t0, 1)}
            for n, vals in running.items():
                l, a = torch.stack(vals).mean(0).tolist()
                entry[f"{n}_loss"], entry[f"{n}_train_acc"] = round(l, 4), round(a, 4)
            running = {}
            if evaluate is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
                entry["heldout"] = evaluate()
                model.train()
            log.append(entry)
            if not progress:
                print(entry, flush=True)
    model.eval()
    return log


def training_curves(record: dict):
    """Tidy curves of a training log: ``(losses, heldout)`` DataFrames over the global step.

    ``losses``: stage, step, set, loss, train_acc; ``heldout``: stage, step, task, accuracy.
    Stages follow each other (a VideoLLM's log starts with its ImageLLM's stages).
    """
    import pandas as pd

    losses, heldout, offset = [], [], 0
    for stage, log in record["logs"].items():
        for e in log:
            step = offset + e["step"]
            for key, value in e.items():
                if key.endswith("_loss"):
                    name = key[:-len("_loss")]
                    losses.append({"stage": stage, "step": step, "set": name, "loss": value,
                                   "train_acc": e[f"{name}_train_acc"]})
            heldout += [{"stage": stage, "step": step, "task": t, "accuracy": a} for t, a in e.get("heldout", {}).items()]
        offset += log[-1]["step"]
    return pd.DataFrame(losses), pd.DataFrame(heldout)


def stage_args(record: dict) -> list[dict]:
    """The arguments of every stage behind a training record, last stage first."""
    return [record["args"]] + record.get("image_args", []) + record.get("earlier_args", [])


def recipe_table(records: dict, tasks) -> "pd.DataFrame":
    """One row per training record (``{name: training_log.json dict}``): patch size, LM heads, the LM's
    text pretraining (``answer`` / ``scene`` questions mixed in by the image stage, ``scene curriculum``:
    :mod:`flowutils.toy.scene_text`), the vision tower (``answer loss`` only, or ``patch labels``
    pretraining then ``frozen``/``trained`` in the image stage), the Object Count training samples of the
    last stage's data (``count samples``), the steps of every stage, then per task
    in ``tasks`` the validation accuracy at the end of training (``val``) and, where the record was
    evaluated, the held-out test accuracy (``test``)."""
    import pandas as pd

    rows = []
    for name, record in records.items():
        args = stage_args(record)
        commands = {a.get("command") for a in args}
        text = {a.get("text_context", "answer") for a in args if a.get("command") == "image" and a.get("text_steps")}
        if "text" in commands:
            text.add("scene curriculum")
        vision = "answer loss"
        if "vision" in commands:
            frozen = any(a.get("freeze_vision") for a in args if a.get("command") == "image")
            vision = "patch labels, " + ("frozen" if frozen else "trained")
        last = [e for log in record["logs"].values() for e in log if "heldout" in e][-1]["heldout"]
        test = {}
        for split in ("image", "video"):
            test.update({r["task"]: r["accuracy"] for r in record.get("heldout", {}).get("accuracy", {}).get(split, [])})
        row = {"record": name, "patch": record["config"]["patch_size"], "heads": record["config"].get("text_heads", 4),
               "LM pretraining": ", ".join(sorted(text)), "vision": vision,
               # records from before the data step's arguments were kept used its default then
               "count samples": record.get("data_args", {}).get("count_per_task", 24000),
               "stages": ", ".join(f"{stage} {log[-1]['step']}" for stage, log in record["logs"].items())}
        for task in tasks:
            row[f"{task} val"], row[f"{task} test"] = last.get(task), test.get(task)
        rows.append(row)
    return pd.DataFrame(rows)


def scene_text_table(records: dict, tasks=("image_color", "image_shape"), objects=(2, 3)) -> "pd.DataFrame":
    """Binding during the scene-text curriculum (``train_toy_models.py text``): one row per record
    (a text run, or a model with a text stage) and evaluation step, with the LM heads, learning rate and most objects drawn, then the
    validation accuracy of each task in ``tasks`` with each number of ``objects`` (``image_color/2``)."""
    import pandas as pd

    rows = []
    for name, record in records.items():
        # a text run's own arguments, or those of the text stage a model was built on
        args = next(a for a in stage_args(record) if a.get("command") == "text")
        for e in record["logs"]["scene_text"]:
            if "heldout" in e:
                rows.append({"record": name, "heads": record["config"]["text_heads"], "lr": args["lr"],
                             "max objects": args["max_objects"], "step": e["step"],
                             **{f"{t}/{n}": e["heldout"][f"{t}/{n}"] for t in tasks for n in objects}})
    return pd.DataFrame(rows)


STAGE_COLUMNS = ("steps", "image_steps", "video_steps", "batch_size", "lr", "max_objects", "freeze_vision",
                 "continuation_weight", "text_mix", "image_mix", "noise")


def stage_table(record: dict) -> "pd.DataFrame":
    """The arguments of every stage behind a training record, first stage first: one row per stage
    (its command), one column per argument of :data:`STAGE_COLUMNS` ("-" where a stage has none)."""
    import pandas as pd

    return pd.DataFrame([{"stage": a["command"], **{c: a.get(c, "-") for c in STAGE_COLUMNS}}
                         for a in reversed(stage_args(record))])


# The toy pair's bars on the held-out split: (model, input, test, the bar in words)
HELDOUT_BARS = (("toy-videollm", "video", lambda r: r.accuracy >= 90, ">= 90"),
                ("toy-imagellm", "image", lambda r: r.accuracy >= 90, ">= 90"),
                ("toy-imagellm", "video", lambda r: abs(r.accuracy - r.chance) <= 10, "within 10 of chance"),
                ("toy-videollm", "video_blanked", lambda r: abs(r.accuracy - r.chance) <= 10, "within 10 of chance"))


def heldout_bars_table(models: dict) -> "pd.DataFrame":
    """The held-out accuracies a toy-models manifest records (``models``: its ``models`` entry), one row
    per bar of :data:`HELDOUT_BARS` and task: model, input, task, accuracy, chance, the bar, and whether
    it is met."""
    import pandas as pd

    rows = []
    for model, kind, ok, text in HELDOUT_BARS:
        held = models[model]["heldout"]
        for task, acc in held["accuracy"][kind].items():
            r = pd.Series({"accuracy": acc, "chance": held["chance"][task]})
            rows.append({"model": model, "input": kind, "task": task, **r, "bar": text, "met": bool(ok(r))})
    return pd.DataFrame(rows)


def accuracy_by_input(models: dict, inputs: dict, by=("task",)) -> "pd.DataFrame":
    """:func:`accuracy_table` of every model (``{name: FlowModel}``) on every input set (``{kind:
    samples}``, e.g. :func:`heldout_samples`), with ``model`` and ``input`` columns first."""
    import pandas as pd

    parts = [accuracy_table(prediction_table(fm.model, fm.processor, fm.template, samples), by).assign(model=name, input=kind)
             for name, fm in models.items() for kind, samples in inputs.items()]
    out = pd.concat(parts, ignore_index=True)
    return out[["model", "input", *[c for c in out.columns if c not in ("model", "input")]]]
