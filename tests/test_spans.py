import pytest

from flowutils.knockout.spans import LayoutError, build_layout
from flowutils.knockout.prompt import build_prompt


def test_groups_decode_to_their_text(tiny, samples):
    for s in samples:
        p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
        lay, ids = p.layout, p.inputs["input_ids"][0]
        tok = tiny.tokenizer
        decode = lambda pos: tok.decode(ids[pos].tolist())
        letter = chr(65 + s.answer_index)
        assert decode(lay.true_option).replace(" ", "") == f"({letter}){s.answer}".replace(" ", "").replace(
            "'", "'")
        assert decode(lay.non_option_question).replace(" ", "").startswith("Question:")
        assert lay.last == [ids.shape[0] - 1] and tok.decode(ids[-1:].tolist()) == "("
        video_id = tiny.adapter.video_token_id(tiny.model.config)
        assert all(int(ids[i]) == video_id for i in lay.video)
        assert len(lay.video) == (ids == video_id).sum()
        assert lay.num_frames == len(s.frames)
        assert sum(len(f) for f in lay.frames) + tiny.adapter.trailing_video_tokens == len(lay.video)
        # groups are disjoint where the paper's groups are
        q = set(lay.question)
        assert set(lay.true_option) <= q and set(lay.false_options) <= q and not q & set(lay.video)
        assert not set(lay.true_option) & set(lay.false_options)


def test_wrong_frame_count_is_a_clear_error(tiny, samples):
    s = samples[0]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    segs = build_prompt(tiny.template, "<video>", s.question, s.candidates)
    with pytest.raises(LayoutError, match="tiny-.*do not split into 3 frames|tokens per frame"):
        build_layout(segs, p.inputs["input_ids"], tiny.tokenizer, tiny.adapter.video_token_id(tiny.model.config),
                     num_frames=3, trailing_video_tokens=tiny.adapter.trailing_video_tokens,
                     expected_tokens_per_frame=7, model_name=tiny.name)


def test_mismatched_text_is_a_clear_error(tiny, samples):
    s = samples[0]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    segs = build_prompt(tiny.template, "<video>", "another question", s.candidates)
    with pytest.raises(LayoutError, match="differ from the tokenizer"):
        build_layout(segs, p.inputs["input_ids"], tiny.tokenizer, tiny.adapter.video_token_id(tiny.model.config),
                     num_frames=len(s.frames), trailing_video_tokens=tiny.adapter.trailing_video_tokens,
                     model_name=tiny.name)


def test_answer_not_in_candidates(tiny, samples):
    s = samples[0]
    with pytest.raises(ValueError, match="not among candidates"):
        tiny.prepare(s.frames, s.question, s.candidates, "Nope.")
