"""The appendix pages on the paper's real benchmarks, end to end: LongVideoBench and Video-MME (F.1, F.2) and
VCGBench (C.2), each copy in its release's own layout (``benchmark_fixtures``), a tiny random-weight
llava_next_video checkpoint loaded from its folder, the page itself run by papermill; and the bugs those paths
had, one test each.

Expected question counts come from the fixtures' records, never from the loaders.
"""

import os
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import benchmark_fixtures as fx
from flowutils.data import load_benchmark
from flowutils.knockout.flows import FLOW_SETS, flow_label
from flowutils.models import load
from flowutils.paper import appendix, multi_token
from flowutils.paper.claims import MIN_QUESTIONS
from conftest import rendered_questions
from tiny_families import tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
LVB_CATEGORIES = ("O2E", "O3O", "SOS")  # the paper's three LongVideoBench categories (Table A, Figs. X-AE)
VIDEOMME_TYPES = {"action_recognition": "Action Recognition", "spatial_perception": "Spatial Perception"}
VERBS = ("grow", "shrink", "appear", "disappear", "light", "dim", "jump", "blink", "pulse", "flash")  # toy vocabulary's


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny-llava-next-video"
    tiny_checkpoint("llava_next_video", path)
    return path


@pytest.fixture(scope="module")
def fm(checkpoint):
    return load(str(checkpoint))


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    base = tmp_path_factory.mktemp("copies")
    return {name: write(base / name) for name, write in fx.WRITERS.items()}


@pytest.fixture(scope="module")
def verb_tagger(tmp_path_factory):
    """A real spaCy pipeline that needs no download (:func:`tagger` of the toy vocabulary's verbs), saved, so that a
    page loads it by its folder."""
    nlp = tagger(VERBS)
    path = tmp_path_factory.mktemp("pos") / "verbs"
    nlp.to_disk(path)
    return nlp, path


def tagger(verbs):
    """A blank English spaCy pipeline whose attribute ruler tags ``verbs`` VERB."""
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    nlp.add_pipe("attribute_ruler").add([[{"LOWER": {"IN": list(verbs)}}]], {"POS": "VERB"})
    return nlp


def run_page(name: str, tmp_path, monkeypatch, **parameters) -> Path:
    """Run ``notebooks/<name>.ipynb`` with papermill (this checkout's flowutils in the kernel); its results folder."""
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    results = tmp_path / "results"
    papermill.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                               parameters={"results_dir": str(results), **parameters}, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False)
    return results


def table(results: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(results / "tables" / f"{name}.csv", keep_default_na=False)


# ----------------------------------------------------------------------------- F.1, F.2: LongVideoBench, Video-MME
def test_the_long_videos_page_runs_on_longvideobench_and_videomme(bench, checkpoint, copies, tmp_path, monkeypatch):
    """Table A's protocol on LongVideoBench's three categories; the four flow families on its videos at 4 and 8
    frames; Video-MME's action recognition and spatial perception side by side (the page could only render the
    synthetic long variant: long_manifest and spatial_manifest are new)."""
    results = run_page("appendix_long_videos", tmp_path, monkeypatch, model=str(checkpoint),
                       benchmark_root=str(bench), manifest="synthetic", tasks=["action_antonym"], n_per_task=2,
                       num_frames=4, long_num_frames=8, long_manifest="longvideobench",
                       long_root=str(copies["longvideobench"]), spatial_manifest="videomme",
                       spatial_root=str(copies["videomme"]), sample_mode="all", selection_questions=2)
    lvb = Counter(q["question_category"] for q in fx.LVB_QUESTIONS if q["question_category"] in LVB_CATEGORIES)
    vmme = Counter(r["task_type"] for r in fx.VIDEOMME_ROWS if r["task_type"] in VIDEOMME_TYPES.values())
    table_a = table(results, "appendix_table_a").set_index(["videos", "condition"])["questions"]
    assert table_a["long"].tolist() == [sum(lvb.values())] * 3 and table_a["short"].tolist() == [2] * 3
    per_task = table(results, "appendix_table_a_per_task")
    assert dict(zip(per_task[per_task.videos == "long"].task, per_task[per_task.videos == "long"].questions)) == lvb
    f2 = table(results, "appendix_f2_questions")
    expected = {("short", "action_antonym"): 2, **{(f"long, {n} frames", c): k for n in (4, 8) for c, k in lvb.items()},
                **{(title, task): vmme[title] for task, title in VIDEOMME_TYPES.items()}}
    assert {(r.set, r.task): r.questions for r in f2.itertuples()} == expected
    assert (f2.analysed == f2.questions).all()  # sample_mode "all": every question analysed
    for family, flows in FLOW_SETS.items():  # one figure per family, one row per set of questions
        curves = table(results, f"appendix_f2_{family.replace('-', '_')}_relative_change_pct")
        assert set(curves.flow) == {flow_label(f) for f in flows}
        assert set(curves.task) == {s for s, _ in expected}
    claims = pd.read_csv(results / "claims" / "appendix_long_videos.csv", keep_default_na=False)
    assert "Spatial Perception" in claims[claims.item == "Spatial questions: cross-frame"].finding.iloc[0]


def test_the_long_videos_page_says_why_its_selection_sweep_is_empty(bench, checkpoint, copies, tmp_path,
                                                                   monkeypatch):
    """A model that answers no selection question correctly (sample_mode "correct") stopped the page with
    KeyError: 'flow'; it now says why and what to change."""
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError, match="no rows to show.*excluded by sample_mode='correct'"):
        run_page("appendix_long_videos", tmp_path, monkeypatch, model=str(checkpoint), benchmark_root=str(bench),
                 tasks=["action_antonym"], n_per_task=2, num_frames=4, long_num_frames=8,
                 long_manifest="longvideobench", long_root=str(copies["longvideobench"]),
                 spatial_manifest="videomme", spatial_root=str(copies["videomme"]), selection_questions=2)


def test_long_and_spatial_questions_come_from_the_named_benchmarks(copies):
    lvb = appendix.long_questions([], "tvbench", 5, "longvideobench", copies["longvideobench"])
    assert Counter(s.task for s in lvb) == Counter(q["question_category"] for q in fx.LVB_QUESTIONS
                                                   if q["question_category"] in LVB_CATEGORIES)
    spatial = appendix.spatial_questions([], "tvbench", 5, "videomme", copies["videomme"])
    assert list(spatial) == ["Action Recognition", "Spatial Perception"]  # the temporal set first
    assert {label: [s.record_id for s in qs] for label, qs in spatial.items()} == {
        title: [r["question_id"] for r in fx.VIDEOMME_ROWS if r["task_type"] == title]
        for title in VIDEOMME_TYPES.values()}


@pytest.mark.parametrize("call, message", [
    (lambda: appendix.long_questions([], "tvbench", 1), "long_manifest=None stands in for the paper's benchmark on "
                                                        "the synthetic benchmark only, but manifest='tvbench'"),
    (lambda: appendix.long_questions([], "synthetic", 1, "longvideobench"), "long_manifest='longvideobench' needs "
                                                                           "long_root"),
    (lambda: appendix.spatial_questions([], "tvbench", 1), r"give spatial_manifest \(the paper's: \['videomme'\]\)"),
    (lambda: appendix.spatial_questions([], "synthetic", 1, "tomato", "/x"),
     r"spatial_manifest='tomato' has no spatial contrast; valid: None .*videomme"),
])
def test_a_missing_or_wrong_benchmark_names_its_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_set_with_no_question_analysed_is_not_measured():
    """A sweep of no rows (the sample mode kept no question of a set) stopped compare_drops with KeyError: 'task'."""
    rows = pd.DataFrame([{"task": "t", "flow": "cross-frame", "sample_id": f"q{q}", "layer": 0,
                          "relative_change_pct": -10.0} for q in range(12)])
    comparison = appendix.compare_drops(rows, pd.DataFrame(), "short", "long")
    assert comparison.empty and list(comparison.columns[:4]) == ["flow", "short mean", "short std", "short n"]
    claim = appendix.smaller_drop_claim("F.2", "x", "finding", "", rows, pd.DataFrame(), "cross-frame", "short", "long")
    assert claim.verdict == "not measured"


def _lows(prefix: str, values, stage: int = 1, flow: str = "cross-frame") -> pd.DataFrame:
    """Sweep rows of one layer: question ``<prefix><i>``'s lowest change is ``values[i]``."""
    return pd.DataFrame([{"task": "t", "flow": flow, "sample_id": f"{prefix}{q}", "stage": stage, "layer": 0,
                          "relative_change_pct": v} for q, v in enumerate(values)])


@pytest.mark.parametrize("n, verdict", [(2, "inconclusive"), (MIN_QUESTIONS, "does not hold")])
def test_a_long_video_comparison_is_inconclusive_below_the_minimum_of_questions(n, verdict):
    """F.2's verdict was decided from any number of questions (two on the Video-MME fixture: 1 + 1); below
    MIN_QUESTIONS on either side it is inconclusive, as every other claim of the book."""
    short, long = _lows("a", [-10.0 - q for q in range(MIN_QUESTIONS)]), _lows("b", [-50.0 - q for q in range(n)])
    comparison = appendix.compare_drops(short, long, "short", "long")
    assert comparison["hi"].iloc[0] < 0  # the interval alone says: the long videos drop more
    assert appendix.smaller_drop_claim("F.2", "x", "f", "", short, long, "cross-frame", "short",
                                       "long").verdict == verdict


@pytest.mark.parametrize("n, verdict", [(2, "inconclusive"), (MIN_QUESTIONS, "holds")])
def test_an_anchor_claim_is_inconclusive_below_the_minimum_of_questions(n, verdict):
    """Figure S: response -> last drops more at the last anchor stage; with 2 questions there, inconclusive."""
    rows = pd.concat([_lows("s1/", [-1.0 - q / 10 for q in range(MIN_QUESTIONS)], 1, "response->last"),
                      _lows("s3/", [-60.0 - q for q in range(n)], 3, "response->last")], ignore_index=True)
    claims = {c.item: c for c in multi_token.anchor_claims(rows)}
    assert claims["Figure S: response->last"].verdict == verdict


# ----------------------------------------------------------------------------- C.2: VCGBench, anchors
def test_a_vcgbench_question_is_asked_open_ended_as_the_paper_asks_it(fm, copies):
    """VCGBench's questions have no options: preparing one stopped with "answer ... is not among candidates []".
    Asked open-ended it has no target; its response follows the assistant's turn with no sentence to complete
    (the paper's "ASSISTANT: A boy swings"), while a synthetic question keeps its sentence."""
    samples = load_benchmark(copies["vcgbench"], "vcgbench")
    asked = multi_token.open_ended_questions(samples)
    assert [q.open_ended_prefix for q in asked] == [""] * len(fx.VCG_QUESTIONS)
    p = fm.prepare_sample(asked[0], 4)
    assert p.gold_index is None and p.option_ids == [] and p.layout.options == []
    assert fm.tokenizer.convert_ids_to_tokens(p.input_ids[0, -2:].tolist()) == ["ASSISTANT", ":"]
    with pytest.raises(ValueError, match=r"temporal/0 is open-ended \(no options\): a multiple-choice prompt cannot"):
        fm.prepare_sample(samples[0], 4)
    response = pd.DataFrame([{"sample_id": asked[0].sample_id, "task": "temporal", "response": "the square Jump"}])
    stage = multi_token.anchor_samples(fm, asked, response, multi_token.anchor_rule("keywords", ["jump"]))[0]
    ids = fm.prepare_sample(stage, 4).input_ids[0, -4:].tolist()
    assert fm.tokenizer.convert_ids_to_tokens(ids) == ["ASSISTANT", ":", "the", "square"]


def _verbs(nlp, text: str, n: int) -> str:
    return ", ".join([w.text for w in nlp(text) if w.pos_ == "VERB"][:n])


@pytest.mark.parametrize("anchors", ["keywords", "verbs"])
def test_the_multi_token_page_runs_on_vcgbench(anchors, checkpoint, copies, tmp_path, monkeypatch, request):
    """C.2 on VCGBench's temporal questions: the responses, their anchors (the synthetic keywords, or the verbs a real
    spaCy pipeline tags), Figure S's rows and the claims, by the page itself."""
    extra = {"keywords": "synthetic"}
    if anchors == "verbs":
        nlp, path = request.getfixturevalue("verb_tagger")
        extra = {"pos_pipeline": str(path)}
    results = run_page("appendix_multi_token", tmp_path, monkeypatch, model=str(checkpoint),
                       benchmark_root=str(copies["vcgbench"]), manifest="vcgbench", n_per_task=10, num_frames=4,
                       anchors=anchors, max_anchors=3, **extra)
    responses = table(results, "appendix_c2_responses")
    assert responses.sample_id.tolist() == [f"open-ended/temporal/{i}" for i in range(len(fx.VCG_QUESTIONS))]
    assert set(responses.task) == {"temporal"}
    if anchors == "verbs":
        expected = [_verbs(nlp, r, 3) for r in responses.response]
    else:
        words = {"grow", "shrink", "appear", "disappear", "light", "up", "dim", "jump", "blink", "pulse", "flash",
                 "left", "right", "down", "begins", "ends"}  # the synthetic temporal keywords (Figure 4's list)
        expected = [", ".join([w for w in r.split() if w.lower() in words][:3]) for r in responses.response]
    assert responses.anchors.tolist() == expected and any(expected)  # some response has an anchor
    found = [len(a.split(", ")) if a else 0 for a in expected]  # anchors per response
    stages = table(results, "appendix_figure_s_rows").drop_duplicates("sample_id").groupby("stage").size()
    assert stages.to_dict() == {s: sum(n >= s for n in found) for s in range(1, max(found) + 1)}


def test_verb_anchors_are_the_words_tagged_verb(fm, verb_tagger):
    nlp, _ = verb_tagger
    questions = multi_token.open_ended_questions(rendered_questions(("action_antonym",), 1))
    text = "A ) Jump . left to the up Grow and Light"
    answers = pd.DataFrame([{"sample_id": questions[0].sample_id, "task": "action_antonym", "response": text}])
    rule = multi_token.anchor_rule("verbs", pos_pipeline=str(verb_tagger[1]))
    assert rule.source == "verbs" and "spaCy pipeline" in rule.about
    doc = nlp(text)
    verbs = [(w.text, w.i) for w in doc if w.pos_ == "VERB"]
    assert len(verbs) == 3
    stages = multi_token.anchor_samples(fm, questions, answers, rule, max_anchors=2)
    assert [(a.anchor, a.response_tokens) for a in stages] == verbs[:2]
    assert stages[1].open_ended_prefix == questions[0].open_ended_prefix + " " + doc[:verbs[1][1]].text


def test_a_verb_split_into_sub_tokens_is_anchored_at_its_first():
    """A real checkpoint's tokenizer (SentencePiece: "▁" marks a word's start) splits a verb into sub-tokens and puts
    the space before it in its first one; the anchor is that first sub-token, found by character offsets."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = "A boy swings a bat and runs to the bases"
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    bpe.train_from_iterator([text, "the dog runs after the ball"], trainers.BpeTrainer(vocab_size=45,
                                                                                       special_tokens=["<unk>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>")
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert "swings" not in [t.lstrip("▁") for t in tokens]  # split into sub-tokens
    nlp = tagger(["swings", "runs"])
    ends = [len("".join(tokens[:i + 1])) for i in range(len(tokens))]  # "▁A▁boy...": one character per "▁"
    first = [next(i for i, end in enumerate(ends) if end > w.idx + 1) for w in nlp(text) if w.pos_ == "VERB"]
    assert [tokens[i] for i in first] == ["▁sw", "▁runs"]
    rule = multi_token.AnchorRule("verbs", "", tagger=nlp)
    assert rule.positions(text, tokens, enc["offset_mapping"]) == first


def test_an_unknown_anchor_source_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"parameter anchors='nouns'; valid: \['keywords', 'verbs'\]"):
        multi_token.anchor_rule("nouns")


def test_verb_anchors_without_spacy_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy now fails, installed or not
    with pytest.raises(ImportError, match=r"anchors='verbs' tags the responses with spaCy, which is not installed: "
                                          r"pip install spacy.*python -m spacy download en_core_web_sm; or "
                                          r"anchors='keywords' \(valid: \['keywords', 'verbs'\]\)"):
        multi_token.anchor_rule("verbs")


def test_verb_anchors_without_a_pos_pipeline_say_what_to_install(tmp_path):
    spacy = pytest.importorskip("spacy")
    with pytest.raises(ImportError, match=r"pipeline 'no_such_pipeline' \(parameter pos_pipeline.* is not installed: "
                                          r"python -m spacy download en_core_web_sm .*valid: \['keywords', 'verbs'\]"):
        multi_token.anchor_rule("verbs", pos_pipeline="no_such_pipeline")
    spacy.blank("en").to_disk(tmp_path / "blank")  # a pipeline that tags nothing
    with pytest.raises(ValueError, match=r"pos_pipeline=.*blank.*tag no part of speech; it needs one of"):
        multi_token.anchor_rule("verbs", pos_pipeline=str(tmp_path / "blank"))


# ----------------------------------------------------------------------------- the Rerun page's status command
def test_the_status_page_as_the_rerun_command_runs_it_needs_no_toy_benchmark(tmp_path, monkeypatch):
    """The Rerun page's status line (``toy_measurements False``) on a GPU machine with neither the default synthetic
    benchmark nor PyAV to render it (the rehearsal's failure): the verdict table only. With the toy's
    measurements on, the same missing benchmark is what the page would have to render."""
    from flowutils.book import rerun

    line = rerun.commands("llava-next-7b-video-ft", "llava-v1.6-vicuna-7b", "/data/TVBench", "tvbench",
                          "results/x").splitlines()[-1]
    assert line.endswith("-p toy_measurements False")
    missing = tmp_path / "no-such-benchmark"
    results = run_page("reproduction_status", tmp_path, monkeypatch, toy_measurements=False,
                       benchmark_root=str(missing))
    assert not missing.exists()  # nothing was rendered
    out = (tmp_path / "reproduction_status.ipynb").read_text()
    assert "this section is skipped" in out and "not run" in out
