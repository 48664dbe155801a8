"""Layer 2, ``inputs``: what a model is asked, token by token.

The paper's prompt and the chat formats, as named parts (:mod:`.prompt`), and the
token layout of one processed prompt: where the system text, the video and each frame, the
question, the non-option question, each option and the last position are (:mod:`.layout`).
Imports only :mod:`flowutils.data`'s level and below: nothing of flowutils.
"""

from .layout import GROUP_NAMES, LayoutError, TokenLayout, build_layout
from .prompt import CHATML, EVAL_MVBENCH, PromptTemplate, build_prompt, prompt_text

__all__ = ["CHATML", "EVAL_MVBENCH", "GROUP_NAMES", "LayoutError", "PromptTemplate", "TokenLayout", "build_layout",
           "build_prompt", "prompt_text"]
