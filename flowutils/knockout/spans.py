"""Token groups of one prompt: system, video (and each frame), question, non-option question,
each option (true / false), last position.

Video tokens are found as the contiguous run of the model's video placeholder id in the
processor's ``input_ids`` and split into frames by the count the processor's pixel tensor
implies. Text groups come from character offsets: the prompt is built from named segments
(:mod:`flowutils.knockout.prompt`), the tokenizer maps tokens to characters, and a token belongs to
the segment where it starts. The processor's ids, with the video run collapsed to one
placeholder, must equal the tokenizer's ids of the same text; if not, the layout cannot
be trusted and a clear error says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .prompt import NON_OPTION_QUESTION, OPTION, SEPARATOR, SUFFIX, SYSTEM, VIDEO, prompt_text


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

    @property
    def video(self) -> list[int]:
        return list(self.video_span)

    @property
    def question(self) -> list[int]:
        """The whole question block: non-option question, separators and every option."""
        return sorted(self.non_option_question + self.separators + [i for o in self.options for i in o])

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
    def num_frames(self) -> int:
        return len(self.frames)

    def frame(self, f: int) -> list[int]:
        return list(self.frames[f])

    def group(self, name: str) -> list[int]:
        """Positions of a named group (``video``, ``question``, ..., ``frame:3``)."""
        if name.startswith("frame:"):
            return self.frame(int(name.split(":", 1)[1]))
        if name not in GROUP_NAMES:
            raise ValueError(f"unknown token group {name!r}; valid: {GROUP_NAMES + ('frame:<i>',)}")
        return list(getattr(self, name))

    def _need_answer(self):
        if self.answer_index is None:
            raise LayoutError("true/false options need the answer index; pass answer_index to build_layout")

    def summary(self) -> dict:
        return {g: len(self.group(g)) for g in GROUP_NAMES if self.answer_index is not None or "option" not in g}


GROUP_NAMES = ("system", "video", "question", "non_option_question", "true_option", "false_options", "last", "suffix")


def _video_runs(ids: list[int], video_id: int) -> list[range]:
    runs, start = [], None
    for i, t in enumerate(ids + [None]):
        if t == video_id and start is None:
            start = i
        elif t != video_id and start is not None:
            runs.append(range(start, i))
            start = None
    return runs


def build_layout(
    segments,
    input_ids: torch.Tensor,
    tokenizer,
    video_token_id: int,
    num_frames: int,
    trailing_video_tokens: int = 0,
    expected_tokens_per_frame: int | None = None,
    answer_index: int | None = None,
    model_name: str = "model",
) -> TokenLayout:
    """Locate every token group of ``input_ids`` (``[1, n]`` or ``[n]``) built from ``segments``."""
    ids = input_ids.reshape(-1).tolist()
    text = prompt_text(segments)
    runs = _video_runs(ids, video_token_id)
    if len(runs) != 1:
        raise LayoutError(
            f"{model_name}: expected one run of video placeholder id {video_token_id}, found {len(runs)} in the "
            f"processed prompt {text[:200]!r}..."
        )
    run = runs[0]
    n_frame_tokens = len(run) - trailing_video_tokens
    if num_frames <= 0 or n_frame_tokens % num_frames:
        raise LayoutError(f"{model_name}: {len(run)} video tokens do not split into {num_frames} frames "
                          f"(+{trailing_video_tokens} trailing)")
    per_frame = n_frame_tokens // num_frames
    if expected_tokens_per_frame is not None and per_frame != expected_tokens_per_frame:
        raise LayoutError(f"{model_name}: {per_frame} tokens per frame in input_ids, the config implies "
                          f"{expected_tokens_per_frame}")
    frames = [range(run.start + f * per_frame, run.start + (f + 1) * per_frame) for f in range(num_frames)]

    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    text_ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    collapsed = ids[: run.start + 1] + ids[run.stop:]
    if collapsed != text_ids:
        raise LayoutError(f"{model_name}: the processor's input_ids (video run collapsed) differ from the "
                          f"tokenizer's ids of the prompt text {text[:200]!r}...; cannot map text offsets")

    # character range of each segment
    bounds, pos = [], 0
    for kind, seg in segments:
        bounds.append((kind, pos, pos + len(seg)))
        pos += len(seg)
    option_of_segment, k = {}, 0
    for s_i, (kind, _, _) in enumerate(bounds):
        if kind == OPTION:
            option_of_segment[s_i] = k
            k += 1
    groups = {SYSTEM: [], NON_OPTION_QUESTION: [], SEPARATOR: [], SUFFIX: []}
    options = [[] for _ in range(k)]
    for j, (start, end) in enumerate(offsets):
        p = j if j <= run.start else j + len(run) - 1  # position in the expanded sequence
        if j == run.start:
            continue  # the placeholder itself (video tokens are the run)
        if start == end and j == 0:
            groups[SYSTEM].append(p)  # BOS-like special token
            continue
        s_i = next((i for i, (_, a, b) in enumerate(bounds) if a <= start < b), None)
        if s_i is None:
            raise LayoutError(f"{model_name}: token {j} (chars {start}:{end}) lies outside every prompt segment")
        kind = bounds[s_i][0]
        if kind == OPTION:
            options[option_of_segment[s_i]].append(p)
        elif kind == VIDEO:
            raise LayoutError(f"{model_name}: a text token overlaps the video placeholder at chars {start}:{end}")
        else:
            groups[kind].append(p)
    layout = TokenLayout(
        n=len(ids), frames=frames, video_span=run, system=groups[SYSTEM], non_option_question=groups[NON_OPTION_QUESTION],
        options=options, separators=groups[SEPARATOR], suffix=groups[SUFFIX], answer_index=answer_index,
    )
    empty = [name for name, g in (("non-option question", layout.non_option_question), ("suffix", layout.suffix))
             if not g] + [f"option {chr(65 + i)}" for i, o in enumerate(options) if not o]
    if empty:
        raise LayoutError(f"{model_name}: no tokens found for {empty} in prompt {text[:200]!r}...")
    if answer_index is not None and not 0 <= answer_index < len(options):
        raise LayoutError(f"{model_name}: answer index {answer_index} but the prompt has {len(options)} options")
    return layout
