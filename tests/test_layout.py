import pytest
import torch

from flowutils.inputs.layout import LayoutError, build_layout
from flowutils.inputs.prompt import EVAL_MVBENCH, build_prompt, prompt_text


def test_groups_decode_to_their_text(tiny, samples):
    for s in samples:
        p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
        lay, ids = p.layout, p.inputs["input_ids"][0]
        tok = tiny.tokenizer
        decode = lambda pos: tok.decode(ids[pos].tolist())
        letter = chr(65 + s.answer_index)
        assert decode(lay.true_option).replace(" ", "") == f"({letter}){s.answer}".replace(" ", "").replace(
            "'", "'")
        assert decode(lay.non_option_question).replace(" ", "") == s.question.replace(" ", "")
        assert decode(lay.labels).replace(" ", "") == "Question:Options:"
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


def test_the_region_replaces_what_the_processor_says_it_replaced(tiny, samples):
    """transformers 5.25's Qwen3-VL processor replaces the chat template's wrapper around the video placeholder,
    not the placeholder alone; the layout follows the characters the processor reports it replaced."""
    s = samples[0]
    tok, video_id = tiny.tokenizer, tiny.adapter.video_token_id(tiny.model.config)
    wrapper = "<image><video><image>"
    segs = build_prompt(tiny.template, "<video>", s.question, s.candidates, video_markers=("<image>", "<image>"))
    text = prompt_text(segs)
    ids = tok(text)["input_ids"]
    at = ids.index(video_id)
    assert tok.convert_ids_to_tokens(ids[at - 1:at + 2]) == ["<image>", "<video>", "<image>"]
    expanded = torch.tensor(ids[:at - 1] + [video_id] * 8 + ids[at + 2:])[None]  # the wrapper -> 2 frames of 4
    a = text.index(wrapper)
    kw = dict(num_frames=2, model_name=tiny.name, answer_index=s.answer_index)
    lay = build_layout(segs, expanded, tok, video_id, replaced=(a, a + len(wrapper)), **kw)
    assert [list(f) for f in lay.frames] == [list(range(at - 1, at + 3)), list(range(at + 3, at + 7))]
    assert lay.video == list(range(at - 1, at + 7)) and lay.n == len(ids) + 5
    assert [i for i in lay.system if i < at + 7] == list(range(at - 1))  # then the text after the video
    # the same prompt expanded at the placeholder alone (the wrapper kept): every text group 2 positions later
    kept = build_layout(segs, torch.tensor(ids[:at] + [video_id] * 8 + ids[at + 1:])[None], tok, video_id, **kw)
    assert kept.video == list(range(at, at + 8))
    for group in ("non_option_question", "true_option", "false_options", "suffix"):
        assert [i + 2 for i in lay.group(group)] == kept.group(group), group
    assert tok.decode(expanded[0, lay.true_option]).replace(" ", "") == f"({chr(65 + s.answer_index)}){s.answer}".replace(" ", "")
    with pytest.raises(LayoutError, match="differ from the tokenizer"):  # the placeholder alone: the wrapper is missing
        build_layout(segs, expanded, tok, video_id, **kw)
    with pytest.raises(LayoutError, match="not whole tokens"):
        build_layout(segs, expanded, tok, video_id, replaced=(a + 1, a + len(wrapper)), **kw)
    with pytest.raises(LayoutError, match="not whole tokens"):  # characters that do not hold the placeholder
        build_layout(segs, expanded, tok, video_id, replaced=(0, 5), **kw)


def _sentencepiece_tokenizer(text: str):
    """A Llama tokenizer (SentencePiece BPE: ``▁`` marks a word's leading space) trained here on ``text``, with
    the newline a token of its own as Llama's byte fallback makes it, and ``<image>`` special."""
    from tokenizers import SentencePieceBPETokenizer, decoders, pre_tokenizers
    from transformers import LlamaTokenizerFast

    sp = SentencePieceBPETokenizer()
    # a word's space is its token's leading "▁"; none is added after a newline (Llama's prepend_scheme "first")
    sp.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split("\n", "isolated"),
                                                pre_tokenizers.Metaspace(prepend_scheme="first")])
    sp.decoder = decoders.Metaspace(prepend_scheme="first")
    sp.train_from_iterator([text] * 3, vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<image>"],
                           show_progress=False)
    tok = LlamaTokenizerFast(tokenizer_object=sp._tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return tok


def test_sentencepiece_words_stay_whole_in_their_groups():
    """With the Vicuna prompt (``eval_mvbench``: `` USER: Question: ...``) a SentencePiece token ``▁Question`` starts
    on the space before its word; it belongs to the question, and every group decodes to exactly its text."""
    question, candidates = "What does the gray cube do?", ["moves left", "moves right", "stays still"]
    parts = build_prompt(EVAL_MVBENCH, "<image>", question, candidates)
    text = prompt_text(parts)
    tok = _sentencepiece_tokenizer(text)
    ids = tok(text)["input_ids"]
    image = tok.convert_tokens_to_ids("<image>")
    at = ids.index(image)
    expanded = torch.tensor(ids[:at] + [image] * 8 + ids[at + 1:])[None]
    lay = build_layout(parts, expanded, tok, image, num_frames=2, answer_index=1, model_name="sentencepiece")
    decode = lambda group: tok.decode(expanded[0, group])
    first = tok.convert_ids_to_tokens(expanded[0, lay.labels[0]].item())
    assert first.startswith("▁Question"), first  # the word's token, with its leading space, is the label's
    assert tok.convert_ids_to_tokens(expanded[0, lay.non_option_question[0]].item()).startswith("▁What")
    assert decode(lay.non_option_question) == question and decode(lay.labels) == "Question:\nOptions:"
    assert decode(lay.true_option) == "(B) moves right"
    assert [decode(o) for o in lay.options] == ["(A) moves left", "(B) moves right", "(C) stays still"]
    assert decode(lay.suffix).strip() == parts[-1][1].strip() == "Only give the best option. ASSISTANT:Best option:("
    assert decode(lay.system).endswith("the question.\n USER: \n USER:")
    # every token of the prompt text in exactly one group, and the groups in prompt order
    groups = lay.system + lay.video + lay.question + lay.suffix
    assert sorted(groups) == list(range(lay.n))
