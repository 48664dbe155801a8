"""Multiple-choice prompts, built as the paper's code builds them, as named parts.

A chat format is a :class:`PromptTemplate`. The paper's prompt (:data:`EVAL_MVBENCH`) and
ChatML (:data:`CHATML`, the format of several families' LMs) are here; a family with a
format of its own declares it in its module (:mod:`flowutils.models.families`), which also
looks templates up by name (``flowutils.models.prompt_template``).

A prompt is a list of named text parts. Keeping the parts (rather than one string)
is what lets :mod:`flowutils.inputs.layout` find the non-option question, each option and the
last position exactly, whatever the tokenizer does inside each part.

TVBench prompt of the LLaVA-NeXT-Video-FT / PLLaVA models (``eval_mvbench``)::

    {system} USER: <video>\\n USER: Question: {q}\\nOptions:\\n(A) {c0}\\n(B) {c1} \\nOnly give the best option. ASSISTANT:Best option:(

The next token after ``(`` is the answer letter.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_MVBENCH = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the best "
    "option that accurately addresses the question.\n"
)

# Part names; flowutils.inputs.layout maps each to token positions.
SYSTEM, VIDEO, LABEL, NON_OPTION_QUESTION, SEPARATOR, OPTION, SUFFIX = (
    "system", "video", "label", "non_option_question", "separator", "option", "suffix"
)


@dataclass(frozen=True)
class PromptTemplate:
    """A chat format: text around the video placeholder and the question block."""

    name: str
    system: str
    before_video: str
    after_video: str
    suffix: str

    def parts(self, video_token: str, question: str, candidates, open_ended_prefix: str | None = None,
              video_markers: tuple[str, str] = ("", "")):
        """``[(kind, text)]`` whose concatenation is the whole prompt.

        ``video_markers``: a model's text right before and after its video placeholder (Qwen's
        ``<|vision_start|>`` / ``<|vision_end|>``); they belong to the prompt text around the video.

        The non-option question is the raw question text, as in the paper's code; the ``Question:`` and
        ``Options:`` around it are parts of kind ``label``. Options are separate parts of kind ``option``
        (``(A) text``), each after a newline ``separator``; labels and separators belong to the question
        block but to neither an option nor the non-option question. ``open_ended_prefix`` drops the
        options and ends the prompt with a sentence to complete (Appendix C.1).
        """
        segs = []
        if self.system:
            segs.append((SYSTEM, self.system))
        segs += [(SYSTEM, self.before_video + video_markers[0]), (VIDEO, video_token),
                 (SYSTEM, video_markers[1] + self.after_video)]
        if open_ended_prefix is not None:
            segs += [(LABEL, "Question: "), (NON_OPTION_QUESTION, question)]
            segs.append((SUFFIX, self.suffix_open_ended(open_ended_prefix)))
            return segs
        segs += [(LABEL, "Question: "), (NON_OPTION_QUESTION, question), (LABEL, "\nOptions:")]
        for i, c in enumerate(candidates):
            segs += [(SEPARATOR, "\n"), (OPTION, f"({chr(ord('A') + i)}) {c}".rstrip())]
        segs.append((SUFFIX, self.suffix))
        return segs

    def suffix_open_ended(self, prefix: str) -> str:
        head = self.suffix.split("Best option:(")[0] if "Best option:(" in self.suffix else self.suffix
        return head + prefix


# LLaVA-NeXT-Video-FT / PLLaVA ("eval_mvbench" conversation mode of the official code)
EVAL_MVBENCH = PromptTemplate(
    name="eval_mvbench",
    system=SYSTEM_MVBENCH,
    before_video=" USER: ",
    after_video="\n USER: ",
    suffix=" \nOnly give the best option. ASSISTANT:Best option:(",
)
# Qwen / LLaVA-OneVision style chat markup with the same answer prefix
CHATML = PromptTemplate(
    name="chatml",
    system="<|im_start|>system\n" + SYSTEM_MVBENCH + "<|im_end|>\n",
    before_video="<|im_start|>user\n",
    after_video="\n",
    suffix="\nOnly give the best option.<|im_end|>\n<|im_start|>assistant\nBest option:(",
)


def build_prompt(template: PromptTemplate, video_token: str, question: str, candidates,
                 video_markers: tuple[str, str] = ("", "")) -> list[tuple[str, str]]:
    """Parts of the multiple-choice prompt for one question."""
    return template.parts(video_token, question, candidates, video_markers=video_markers)


def prompt_text(parts) -> str:
    return "".join(text for _, text in parts)
