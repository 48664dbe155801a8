"""Token groups of one prompt: system, video (and each frame), question, non-option question,
each option (true / false), last position.

The processor replaces the prompt's one video placeholder with the video's expansion: the
*video region*. Which characters of the prompt it replaced, the processor says itself
(``return_text_replacement_offsets``): the placeholder, or more (transformers 5.25's Qwen3-VL
replaces the chat template's ``<|vision_start|><|video_pad|><|vision_end|>`` wrapper, since it
wraps every temporal group in its own pair). The tokenizer's ids of the prompt text, with the
tokens of those characters replaced by the region, must equal the processor's ``input_ids``;
if not, the layout cannot be trusted and a clear error says so. Inside the region, frames are runs of the model's
video placeholder id:

* one run (LLaVA-NeXT-Video, LLaVA-OneVision, PLLaVA, Qwen2.5-VL): split evenly into the
  frame count the processor's outputs imply, after ``trailing_video_tokens`` (OneVision's
  newline embedding after the whole video);
* one run per frame (InternVL ``Frame{i}: <img>...</img>``, VideoLLaMA3 ``Time t s:...``,
  Qwen3-VL ``<t seconds><|vision_start|>...<|vision_end|>`` per temporal group, SmolVLM2
  ``Frame from MM:SS:<fake_token_around_image>...``): frame ``f`` is run ``f``.

**Text inside the video region** (frame labels, timestamps, wrapper tokens, SmolVLM2's
intro and outro sentences) belongs to the ``video`` group and to no frame. It exists only
because of the video and, like the frames, only carries the video's information to the
rest of the prompt, so the paper's flows (video / question / options / last) treat it as
video: ``video->question`` also cuts the labels, while ``cross-frame`` cuts only edges
between frames' own tokens (:attr:`TokenLayout.video_text` lists these positions).

Text groups come from character offsets: the prompt is built from named parts
(:mod:`flowutils.inputs.prompt`), the tokenizer maps tokens to characters, and a token belongs to
the part of its first character that is not white space: a SentencePiece token such as ``▁Question``
starts on the space before its word (Vicuna's prompt puts that space at the end of the text before the
question), and belongs to its word's part, so that every group holds whole words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch

from .prompt import LABEL, NON_OPTION_QUESTION, OPTION, SEPARATOR, SUFFIX, SYSTEM, VIDEO, prompt_text


class LayoutError(ValueError):
    """A token group could not be located (the message names the text and the model)."""


@dataclass
class TokenLayout:
    """Positions of each token group in one input sequence of length ``n``."""

    n: int
    frames: list[range]
    video_span: range
    system: list[int]
    non_option_question: list[int]
    options: list[list[int]]
    separators: list[int]
    suffix: list[int]
    answer_index: int | None = None
    labels: list[int] = field(default_factory=list)  # "Question:" and "Options:" around the non-option question

    @property
    def video(self) -> list[int]:
        return list(self.video_span)

    @property
    def question(self) -> list[int]:
        """The whole question block: its labels, the non-option question, separators and every option."""
        return sorted(self.labels + self.non_option_question + self.separators + [i for o in self.options for i in o])

    @property
    def true_option(self) -> list[int]:
        self._need_answer()
        return self.options[self.answer_index]

    @property
    def false_options(self) -> list[int]:
        self._need_answer()
        return sorted(i for k, o in enumerate(self.options) if k != self.answer_index for i in o)

    @property
    def last(self) -> list[int]:
        return [self.n - 1]

    @property
    def video_text(self) -> list[int]:
        """Positions of the video region outside every frame: frame labels, timestamps, wrapper tokens and
        placeholder tokens after the last frame (``trailing_video_tokens``)."""
        in_frames = {i for f in self.frames for i in f}
        return [i for i in self.video_span if i not in in_frames]

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def frame(self, f: int) -> list[int]:
        if isinstance(f, bool) or not isinstance(f, int) or not 0 <= f < self.num_frames:
            raise ValueError(f"frame {f!r} does not exist: this input has {self.num_frames} frames, "
                             f"valid: frame:0 .. frame:{self.num_frames - 1}")
        return list(self.frames[f])

    @cached_property
    def fingerprint(self) -> tuple:
        """Every group's positions: two layouts are the same iff their fingerprints are equal (a plan built
        for one refuses to run on another)."""
        return (self.n, tuple((f.start, f.stop) for f in self.frames), (self.video_span.start, self.video_span.stop),
                tuple(self.system), tuple(self.labels), tuple(self.non_option_question), tuple(map(tuple, self.options)),
                tuple(self.separators), tuple(self.suffix), self.answer_index)

    def describe(self) -> str:
        return f"{self.num_frames} frames, {self.n} tokens"

    def group(self, name: str) -> list[int]:
        """Positions of a named group (``video``, ``question``, ..., ``frame:3``)."""
        if name.startswith("frame:"):
            return self.frame(frame_index(name))
        if name not in GROUP_NAMES:
            raise ValueError(f"unknown token group {name!r}; valid: {GROUP_NAMES + ('frame:<i>',)}")
        return list(getattr(self, name))

    def _need_answer(self):
        if self.answer_index is None:
            raise LayoutError("true/false options need the answer index; pass answer_index to build_layout")

    def summary(self) -> dict:
        return {g: len(self.group(g)) for g in GROUP_NAMES if self.answer_index is not None or "option" not in g}


def frame_index(name: str) -> int:
    """``"frame:3"`` -> 3; a clear error for anything but a non-negative integer (``frame:-1`` is no frame)."""
    index = name.split(":", 1)[1].strip()
    if not index.isdigit():
        raise ValueError(f"{name!r} names no frame: a frame group is frame:<i> with i = 0, 1, ... (0-based)")
    return int(index)


GROUP_NAMES = ("system", "video", "question", "non_option_question", "labels", "true_option", "false_options", "last",
               "suffix")


def _video_runs(ids: list[int], video_id: int) -> list[range]:
    runs, start = [], None
    for i, t in enumerate(ids + [None]):
        if t == video_id and start is None:
            start = i
        elif t != video_id and start is not None:
            runs.append(range(start, i))
            start = None
    return runs


def _frame_spans(runs: list[range], num_frames: int, trailing: int, model_name: str) -> list[range]:
    """Frames from the placeholder runs: one run per frame, or one run split evenly (after ``trailing``)."""
    if num_frames > 0 and len(runs) == num_frames and num_frames > 1 and not trailing:
        return runs
    if len(runs) != 1:
        raise LayoutError(f"{model_name}: {len(runs)} runs of video placeholder tokens for {num_frames} frames "
                          f"(expected one run per frame, or one run for the whole video)")
    run = runs[0]
    n_frame_tokens = len(run) - trailing
    if num_frames <= 0 or n_frame_tokens % num_frames:
        raise LayoutError(f"{model_name}: {len(run)} video tokens do not split into {num_frames} frames "
                          f"(+{trailing} trailing)")
    per = n_frame_tokens // num_frames
    return [range(run.start + f * per, run.start + (f + 1) * per) for f in range(num_frames)]


def _anchor(text: str, start: int, end: int) -> int:
    """The character a token ``[start, end)`` is placed by: its first one that is not white space (its start
    if it is all white space)."""
    return next((c for c in range(start, end) if not text[c].isspace()), start)


def _replaced_tokens(offsets, placeholder: int, replaced, text: str, model_name: str) -> tuple[int, int]:
    """Tokens ``[first, stop)`` of the prompt text that the video region replaces: the placeholder token, or
    the whole tokens covering the characters ``replaced`` (which must hold the placeholder)."""
    if replaced is None:
        return placeholder, placeholder + 1
    a, b = replaced
    inside = [j for j, (start, end) in enumerate(offsets) if start != end and start < b and end > a]
    if (not inside or offsets[inside[0]][0] != a or offsets[inside[-1]][1] != b or placeholder not in inside
            or inside != list(range(inside[0], inside[-1] + 1))):
        raise LayoutError(f"{model_name}: the processor replaced characters {a}:{b} ({text[a:b]!r}) of the prompt, "
                          f"which are not whole tokens around the video placeholder")
    return inside[0], inside[-1] + 1


def build_layout(
    parts,
    input_ids: torch.Tensor,
    tokenizer,
    video_token_id: int,
    num_frames: int,
    trailing_video_tokens: int = 0,
    expected_tokens_per_frame: int | None = None,
    answer_index: int | None = None,
    model_name: str = "model",
    replaced: tuple[int, int] | None = None,
) -> TokenLayout:
    """Locate every token group of ``input_ids`` (``[1, n]`` or ``[n]``) built from ``parts``.

    ``replaced``: the characters ``[start, end)`` of the prompt text that the processor replaced with the
    video region (its ``text_replacement_offsets``); None: the video placeholder alone."""
    ids = input_ids.reshape(-1).tolist()
    text = prompt_text(parts)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    text_ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    # character range of each part
    bounds, pos = [], 0
    for kind, seg in parts:
        bounds.append((kind, pos, pos + len(seg)))
        pos += len(seg)
    part_of = [next((i for i, (_, a, b) in enumerate(bounds) if a <= _anchor(text, start, end) < b), None)
               for start, end in offsets]
    at = [j for j, s_i in enumerate(part_of) if s_i is not None and bounds[s_i][0] == VIDEO]
    if len(at) != 1:
        raise LayoutError(f"{model_name}: the video placeholder of the prompt is {len(at)} tokens, expected one "
                          f"(is it a special token of the tokenizer?) in {text[:200]!r}...")
    first, stop = _replaced_tokens(offsets, at[0], replaced, text, model_name)
    region = range(first, len(ids) - (len(text_ids) - stop))  # the processor's expansion of those tokens
    if len(region) < 1 or ids[:first] != text_ids[:first] or ids[region.stop:] != text_ids[stop:]:
        raise LayoutError(f"{model_name}: the processor's input_ids (video region collapsed) differ from the "
                          f"tokenizer's ids of the prompt text {text[:200]!r}...; cannot map text offsets")
    runs = [range(region.start + r.start, region.start + r.stop) for r in _video_runs(ids[region.start:region.stop],
                                                                                        video_token_id)]
    outside = sum(t == video_token_id for t in ids) - sum(len(r) for r in runs)
    if outside:
        raise LayoutError(f"{model_name}: {outside} video placeholder tokens (id {video_token_id}) lie outside "
                          f"the video region in {text[:200]!r}...")
    frames = _frame_spans(runs, num_frames, trailing_video_tokens, model_name)
    per_frame = {len(f) for f in frames}
    if len(per_frame) != 1:
        raise LayoutError(f"{model_name}: frames have different token counts {[len(f) for f in frames]}")
    per_frame = per_frame.pop()
    if expected_tokens_per_frame is not None and per_frame != expected_tokens_per_frame:
        raise LayoutError(f"{model_name}: {per_frame} tokens per frame in input_ids, the config implies "
                          f"{expected_tokens_per_frame}")

    option_of_part, k = {}, 0
    for s_i, (kind, _, _) in enumerate(bounds):
        if kind == OPTION:
            option_of_part[s_i] = k
            k += 1
    groups = {SYSTEM: [], LABEL: [], NON_OPTION_QUESTION: [], SEPARATOR: [], SUFFIX: []}
    options = [[] for _ in range(k)]
    for j, ((start, end), s_i) in enumerate(zip(offsets, part_of)):
        if first <= j < stop:
            continue  # the placeholder (and what the processor replaced with it): the video region
        p = j if j < first else j + len(region) - (stop - first)  # position in the expanded sequence
        if start == end and j == 0:
            groups[SYSTEM].append(p)  # BOS-like special token
            continue
        if s_i is None:
            raise LayoutError(f"{model_name}: token {j} (chars {start}:{end}) lies outside every prompt part")
        kind = bounds[s_i][0]
        if kind == OPTION:
            options[option_of_part[s_i]].append(p)
        else:
            groups[kind].append(p)
    layout = TokenLayout(
        n=len(ids), frames=frames, video_span=region, system=groups[SYSTEM], non_option_question=groups[NON_OPTION_QUESTION],
        options=options, separators=groups[SEPARATOR], suffix=groups[SUFFIX], answer_index=answer_index,
        labels=groups[LABEL],
    )
    empty = [name for name, g in (("non-option question", layout.non_option_question), ("suffix", layout.suffix))
             if not g] + [f"option {chr(65 + i)}" for i, o in enumerate(options) if not o]
    if empty:
        raise LayoutError(f"{model_name}: no tokens found for {empty} in prompt {text[:200]!r}...")
    if answer_index is not None and not 0 <= answer_index < len(options):
        raise LayoutError(f"{model_name}: answer index {answer_index} but the prompt has {len(options)} options")
    return layout
