from flowutils.inputs.prompt import SYSTEM_MVBENCH, build_prompt, prompt_text
from flowutils.models import prompt_template


def test_eval_mvbench_prompt_is_the_papers():
    text = prompt_text(build_prompt(prompt_template("eval_mvbench"), "<image>", "What is the action?", ["Grow.", "Shrink."]))
    expected = (SYSTEM_MVBENCH + " USER: <image>\n USER: Question: What is the action?\nOptions:\n(A) Grow.\n"
                "(B) Shrink. \nOnly give the best option. ASSISTANT:Best option:(")
    assert text == expected
    assert SYSTEM_MVBENCH.startswith("Carefully watch the video") and SYSTEM_MVBENCH.endswith("question.\n")


def test_videollama3_has_no_system_and_no_prefix():
    text = prompt_text(build_prompt(prompt_template("videollama3"), "<video>", "Q?", ["a", "b"]))
    assert "Carefully" not in text and "Best option:(" not in text
    assert "Answer with the option's letter from the given choices directly and only give the best option." in text
