"""``FlowModel``: a Hugging Face video LLM, unchanged, plus what flowutils needs to probe it.

It owns the model, its processor and its family adapter; it builds the prompt, runs the
processor and locates the token groups (:class:`flowutils.inputs.layout.TokenLayout`). The engine
(:mod:`flowutils.engine`) takes hold of the model's attention when it first runs a plan on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.video import VideoClip, question_clip
from ..inputs.prompt import build_prompt, prompt_text
from ..inputs.layout import TokenLayout, build_layout
from ..knockout.windows import protocol_for
from .adapter import FamilyAdapter
from .families import adapter_for, prompt_template
from .encoding import VideoEncoding, to_device
from ..data.video import NUM_FRAMES


@dataclass
class PreparedInput:
    """One question, processed: model inputs, token layout, answer-letter ids."""

    inputs: dict
    layout: TokenLayout
    option_ids: list[int]  # vocabulary id of each option letter A, B, ...
    gold_index: int | None
    sample_id: str = ""
    task: str = ""
    input_ids: torch.Tensor | None = None  # [1, n] token ids, the video placeholder once per video token

    @property
    def gold_id(self) -> int | None:
        return None if self.gold_index is None else self.option_ids[self.gold_index]


class FlowModel:
    """A video LLM ready for knockout, logit lens and attention maps (batch size 1 per question)."""

    def __init__(self, model, processor, adapter: FamilyAdapter | None = None, template: str | None = None,
                 name: str = "model", protocol: str | None = None, random_share: float | None = None):
        self.model = model.eval()
        self.processor = processor
        self.adapter = adapter or adapter_for(model.config)
        self.template = prompt_template(template or self.adapter.template)
        self.name = name
        self.decoder = self.adapter.decoder(model)
        self.lm_head = self.adapter.lm_head(model)
        self.layer_of = {id(layer.self_attn): i for i, layer in enumerate(self.decoder.layers)}
        # window size and interval of its sweeps, Table 3's random share: the paper's on the paper's models (their
        # manifests say so)
        self.protocol = protocol_for(self.n_layers, protocol, random_share)

    @property
    def n_layers(self) -> int:
        return len(self.decoder.layers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def letter_id(self, letter: str) -> int:
        ids = self.tokenizer.convert_tokens_to_ids([letter])
        if ids[0] is None or ids[0] == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.name}: option letter {letter!r} is not a single vocabulary token")
        return ids[0]

    def prepare(self, frames: np.ndarray | VideoClip, question: str, candidates, answer: str | None = None,
                sample_id: str = "", task: str = "", open_ended_prefix: str | None = None) -> PreparedInput:
        """Process ``frames`` (``[time, height, width, 3]`` uint8, or a :class:`VideoClip` that also says where
        in its video each frame was taken) and a multiple-choice question.

        ``open_ended_prefix`` (Appendix C.1): the options are left out of the prompt, which ends with this
        sentence to complete; the "option ids" are then the first sub-token of each candidate answer after
        the sentence (:meth:`answer_token_id`), so the gold id is the ground truth's first sub-token."""
        candidates = list(candidates)
        if answer is not None and answer not in candidates:
            raise ValueError(f"{sample_id or 'sample'}: answer {answer!r} is not among candidates {candidates}")
        if open_ended_prefix is not None:
            parts = self.template.parts(self.adapter.video_token, question, candidates, open_ended_prefix,
                                        self.adapter.video_markers)
        else:
            parts = build_prompt(self.template, self.adapter.video_token, question, candidates,
                                 self.adapter.video_markers)
        text = prompt_text(parts)
        if not isinstance(frames, VideoClip):  # bare frames: no timing (a processor writing timestamps uses its default)
            frames = VideoClip(np.asarray(frames), tuple(range(len(frames))), None, len(frames))
        enc = (self.adapter.encode or _processor_encode)(self, text, frames)
        gold = candidates.index(answer) if answer is not None else None
        layout = build_layout(
            parts, enc.input_ids, self.tokenizer, self.adapter.video_token_id(self.model.config),
            num_frames=enc.num_frames, trailing_video_tokens=self.adapter.trailing_video_tokens,
            expected_tokens_per_frame=enc.tokens_per_frame, answer_index=None if open_ended_prefix is not None else gold,
            model_name=self.name, replaced=enc.replaced,
        )
        if open_ended_prefix is not None:
            ids = [self.answer_token_id(open_ended_prefix, c) for c in candidates]
        else:
            ids = [self.letter_id(chr(ord("A") + i)) for i in range(len(candidates))]
        return PreparedInput(enc.inputs, layout, ids, gold, sample_id, task, enc.input_ids)

    def answer_token_id(self, prefix: str, answer: str) -> int:
        """The first sub-token of ``answer`` written after ``prefix`` (one space between): the token the model
        must produce next to start that answer, found by tokenising the sentence with and without it."""
        head = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(f"{prefix} {answer}", add_special_tokens=False)["input_ids"]
        n = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), len(head))
        if n >= len(full) or full[n] == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.name}: answer {answer!r} has no known first sub-token after {prefix!r}")
        return full[n]

    def prepare_sample(self, sample, num_frames: int = NUM_FRAMES, clip: VideoClip | None = None) -> PreparedInput:
        """Prepare a :class:`flowutils.data.VideoQASample` (read from disk) or a rendered synthetic sample; a question
        of an open-ended benchmark (VCGBench) only when asked open-ended (``open_ended_prefix``), with no target.
        ``clip``: its video, already read with :func:`flowutils.data.video.question_clip` (the runner reads the next
        questions' videos ahead, in a thread)."""
        clip = question_clip(sample, num_frames) if clip is None else clip
        sid = sample.sample_id if hasattr(sample, "video_path") else getattr(sample, "sample_id", sample.task)
        prefix = getattr(sample, "open_ended_prefix", None)
        # a benchmark's open-ended question (VCGBench) has no options: its answer is a reference text, no target
        open_ended = getattr(sample, "open_ended", False)
        if open_ended and prefix is None:
            raise ValueError(f"{sid} is open-ended (no options): a multiple-choice prompt cannot ask it; ask it "
                             "open-ended (flowutils.paper.multi_token.open_ended_questions)")
        return self.prepare(clip, sample.question, sample.candidates, None if open_ended else sample.answer, sid,
                            sample.task, prefix)

    @torch.no_grad()
    def forward(self, prepared: PreparedInput, state=None, **kwargs):
        """One full forward of the unchanged model (``state``: the engine's knockout state, passed to its
        attention function), without a KV cache: nothing here generates, and the fast engine captures
        keys/values itself."""
        return self.model(**prepared.inputs, flow_knockout=state, **{"use_cache": False, **kwargs})


def _processor_encode(fm: FlowModel, text: str, clip: VideoClip) -> VideoEncoding:
    """The family's own processor on ``(text, video)``: the video's real timing where it is known (a processor
    writing timestamps would assume an fps otherwise), and the characters of ``text`` it replaced with the
    video region, as the processor reports them; frames counted from its pixel tensor."""
    kwargs = dict(fm.adapter.processor_kwargs)
    if clip.fps is not None:
        from transformers.video_utils import VideoMetadata

        height, width = clip.frames.shape[1:3]
        kwargs["video_metadata"] = [VideoMetadata(
            total_num_frames=clip.n_video_frames, fps=clip.fps, frames_indices=list(clip.indices),
            height=height, width=width, duration=clip.n_video_frames / clip.fps)]
    # one sample holding one video: the nested form every family's processor reads alike (5.17's SmolVLM
    # counts the frames of a bare [video] as videos)
    enc = fm.processor(text=text, videos=[[clip.frames]], return_tensors="pt", return_text_replacement_offsets=True,
                       **kwargs)
    replaced = [o["span"] for o in (enc.pop("text_replacement_offsets", None) or [[]])[0] if o["type"] == "video"]
    if len(replaced) > 1:
        raise ValueError(f"{fm.name}: the processor replaced {len(replaced)} video placeholders in one prompt")
    inputs = {k: to_device(v, fm.device, fm.dtype if v.is_floating_point() else None) for k, v in enc.items()}
    config = fm.model.config
    if fm.adapter.video_grid is not None:
        n_frames, per_frame = fm.adapter.video_grid(config, enc)
    else:  # pixel_values_videos [1, T, C, H, W]
        video = enc["pixel_values_videos"]
        n_frames, per_frame = video.shape[1], fm.adapter.tokens_per_frame(config, video.shape[-2], video.shape[-1])
    return VideoEncoding(inputs, enc["input_ids"], num_frames=n_frames, tokens_per_frame=per_frame,
                         replaced=tuple(replaced[0]) if replaced else None)
