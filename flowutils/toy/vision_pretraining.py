"""Per-patch object labels: the toy vision tower's pretraining stand-in.

The paper's models see through a CLIP/SigLIP encoder pretrained on hundreds of millions of
images, whose patch features already say what object part each patch shows. A toy vision
tower trained only through the LM's answer loss does not learn that: with a language model
that binds perfectly in words (:mod:`flowutils.toy.scene_text`), the toy ImageLLM still answered
questions about one of two objects at the level of picking either object (book appendix).
So before the image questions, the vision tower learns to name, at every patch, the colour
and the shape of the object the patch covers (or background): two linear heads on the
features the LM will read (``vision_feature_layer``, class token dropped), discarded after.

Labels come from the rendered pixels and the ground truth: every object of a synthetic image
has its own colour (an exact RGB of :data:`flowutils.data.synthetic.COLORS`), and ``meta["objects"]``
gives that colour's shape. A patch takes the label of the object that covers most of it, where
that is at least a quarter of the patch, else background.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.synthetic import COLORS, SHAPES

COLOR_CLASSES = ("background",) + tuple(COLORS)
SHAPE_CLASSES = ("background",) + SHAPES


def patch_labels(frame: np.ndarray, objects, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Colour and shape class (indices into :data:`COLOR_CLASSES`, :data:`SHAPE_CLASSES`) of every
    ``patch`` x ``patch`` patch of ``frame`` ``[H, W, 3]`` uint8: ``([H/patch, W/patch], same)``.

    ``objects``: ``[[colour, shape], ...]`` with distinct colours (an image sample's ``meta["objects"]``).
    """
    colours = [c for c, _ in objects]
    if len(set(colours)) != len(colours):
        raise ValueError(f"patch labels need objects of distinct colours, got {objects}")
    shape_of = dict((c, s) for c, s in objects)
    pixel_colour = np.zeros(frame.shape[:2], np.int64)
    pixel_shape = np.zeros(frame.shape[:2], np.int64)
    for c in colours:
        hit = (frame == np.asarray(COLORS[c], np.uint8)).all(-1)
        pixel_colour[hit] = COLOR_CLASSES.index(c)
        pixel_shape[hit] = SHAPE_CLASSES.index(shape_of[c])
    return _patch_label(pixel_colour, patch, len(COLOR_CLASSES)), _patch_label(pixel_shape, patch, len(SHAPE_CLASSES))


def _patch_label(labels: np.ndarray, patch: int, n_classes: int) -> np.ndarray:
    """Per patch: the object label covering most of it if that is at least a quarter of the patch
    (an object's edge patches carry its features too), else background (0)."""
    h, w = labels.shape[0] // patch, labels.shape[1] // patch
    blocks = labels[:h * patch, :w * patch].reshape(h, patch, w, patch).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = np.stack([(blocks == k).sum(-1) for k in range(1, n_classes)], -1)
    return np.where(counts.max(-1) * 4 >= patch * patch, counts.argmax(-1) + 1, 0)


def labelled_frames(samples, patch: int) -> dict:
    """The single-frame samples whose objects have distinct colours, as training tensors:
    ``frames`` ``[N, 3, H, W]`` uint8, ``colour`` and ``shape`` ``[N, H/patch * W/patch]``."""
    frames, colour, shape = [], [], []
    for s in samples:
        objects = s.meta.get("objects")
        if not objects or len({c for c, _ in objects}) != len(objects):
            continue
        c, sh = patch_labels(s.frames[0], objects, patch)
        frames.append(s.frames[0])
        colour.append(c.reshape(-1))
        shape.append(sh.reshape(-1))
    return {"frames": torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(),
            "colour": torch.from_numpy(np.stack(colour)), "shape": torch.from_numpy(np.stack(shape))}


def patch_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` normalised pixels -> ``[N, patches, vision_hidden]``: the features the LM
    reads (the config's ``vision_feature_layer``, class token dropped)."""
    hidden = model.model.vision_tower(pixel_values, output_hidden_states=True).hidden_states
    return hidden[model.config.vision_feature_layer][:, 1:]


def train_vision(model, processor, data: dict, steps: int, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
                 noise: float = 0.03, log_every: int = 100, progress: bool = True) -> list[dict]:
    """Train the vision tower (and two throwaway linear heads) to classify every patch's colour
    and shape (``data``: :func:`labelled_frames`, on the model's device), with Gaussian noise of std
    ``noise`` on the normalised pixels as in :func:`flowutils.toy.training.train`; returns the log
    (loss, and each head's accuracy on the patches that show an object)."""
    from tqdm.auto import tqdm

    from .training import noisy_pixel_values

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    width = model.config.vision_config.hidden_size
    heads = torch.nn.ModuleDict({"colour": torch.nn.Linear(width, len(COLOR_CLASSES)),
                                 "shape": torch.nn.Linear(width, len(SHAPE_CLASSES))}).to(device)
    tower = model.model.vision_tower
    tower.train()
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    log, running = [], []
    for step in tqdm(range(steps), disable=not progress, desc="vision"):
        idx = torch.randint(0, len(data["frames"]), (batch_size,), generator=gen).to(device)
        px = noisy_pixel_values(data["frames"][idx][:, None], processor, noise, gen)[:, 0]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            feats = patch_features(model, px).float()
        losses, accs = [], []
        for name, head in heads.items():
            logits, target = head(feats), data[name][idx]
            losses.append(torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten()))
            on_object = target > 0
            accs.append((logits.argmax(-1) == target)[on_object].float().mean())
        loss = sum(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(torch.stack([loss.detach(), *accs]))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            l, ca, sa = torch.stack(running).mean(0).tolist()
            running = []
            # "patches_*" as the training logs name their sets: the curves of every stage read alike
            log.append({"step": step + 1, "patches_loss": round(l, 4), "patches_train_acc": round((ca + sa) / 2, 4),
                        "colour_acc": round(ca, 4), "shape_acc": round(sa, 4)})
            if not progress:
                print(log[-1], flush=True)
    tower.eval()
    return log
