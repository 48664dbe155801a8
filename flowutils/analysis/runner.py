"""The per-question runner of every analysis: checks, shards, the result store, counted skips, out-of-memory retry.

Every measurement of the paper is made one question at a time: prepare the question (decode
the video, run the processor, find the token spans), usually run the unmodified forward once
(the baseline), then measure something and write rows. The knockout sweeps (:mod:`.sweep`),
Table 3's pathways (:mod:`.pathways`), the layerwise answer probability (:mod:`.answer`), the
keyword hits of the logit lens (:mod:`.keywords`), the temporal words' attention
(:mod:`.integration`), the open-ended answers (:mod:`.temporal`) and the explorer's panels
(:mod:`flowutils.book.explore`) differ only in that last step. :func:`run_questions` is the loop
around it, written once; an analysis hands it a *measurement*: a function of one
:class:`Question` that returns the question's rows (dicts with the same keys, one of them
``sample_id``; plain ``bool``/``int``/``float``/``str`` values when the rows go to a store).

What the runner does around the measurement:

* **Checks first.** The analysis's own problems (an unknown flow, a layer past the depth), the
  sample mode, the number of frames and the question list (empty, duplicate ids, in-memory
  videos shorter than the frames asked for) are reported all at once, before any work.
* **Which questions.** A question's id is its ``sample_id`` (else ``task/index``). Question ``i``
  belongs to shard ``i % num_shards`` (:mod:`.shards`). ``sample_mode`` keeps the questions the
  model answers correctly (``"correct"``) or wrongly (``"wrong"``) at baseline, or all; the
  others are *excluded*: recorded, no rows. ``per_task`` stops measuring a task once that many
  of its questions are done (one example per task, say).
* **Questions read ahead.** A :class:`VideoReader` thread decodes the videos of the next questions while
  the current one is measured (decoding is CPU work; the measurement is mostly GPU work). On a GPU it
  also prepares them (:func:`prepares_ahead`): the processor's host work and the launches of the vision
  tower then overlap the decoder's work too, so the GPU does not wait for the host between questions.
* **Rows read one question late.** A pipelined measurement (the sweep's: ``run_questions(pipelined=True)``)
  only queues its device work and returns a function that reads its rows. On a GPU the runner reads them
  after it has queued the next question's baseline and knockouts (:func:`pipelines`), so the GPU works through
  one question while the host writes the previous one's rows and launches the next; the baseline's NaN/inf
  check then waits until the rows are read (sample mode ``"all"``; the others read the baseline's answer at once).
* **Prepare and baseline.** The runner prepares the question (``prepared.sample_id`` is its id);
  the baseline runs on first use (:attr:`Question.baseline`), once, whether the sample mode or
  the measurement asks for it first; a measurement that needs none (attention rows, say) runs none.
* **Counted skips.** A question whose video cannot be decoded (``video``), whose token spans
  cannot be found (``spans``), whose prompt is longer than the model's context (``context``,
  :func:`check_context`), whose logits hold NaN or inf (``non-finite``,
  :func:`require_finite`) or that runs out of memory (``oom``) is *skipped* with its reason and
  the run goes on. A measurement skips its question by raising :class:`Skip`. Knockouts go
  through :func:`knockout_with_retry`, which retries out-of-memory with half the batch, down to
  one plan, before the question is skipped.
* **The result store.** Given ``out``, each question's rows and status are written in one
  transaction to ``out/<key>/`` (:mod:`.store`); ``<key>`` hashes the analysis and its
  parameters, the model's identity, the benchmark, the sample mode, the frames and flowutils'
  source (:func:`run_key`). A rerun skips the questions finished there (an ``oom`` skip is tried
  again, and so is a skip whose question changed since: a repaired video of another size), refuses a question
  stored with other content, and reads the table back from the
  store, so a run killed at any point and resumed returns what an uninterrupted run returns.

:func:`run_questions` returns the tidy table (pandas), in the order of the questions, with
``attrs["skipped"]`` (records ``sample_id``, ``task``, ``kind``, ``reason``,
:func:`flowutils.analysis.store.skip_summary`), ``attrs["store"]`` (the result set's
directory; None without ``out``), ``attrs["excluded"]`` (questions outside the sample mode) and
``attrs["sample_mode"]`` and ``attrs["timings"]`` (seconds per phase, :class:`Timings`; also written to the
store's provenance); :func:`require_rows` turns an empty table into a message saying why.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..data.video import BenchmarkError, question_clip
from ..engine import knockout_logits, run_baseline
from ..inputs.layout import LayoutError
from ..models.encoding import to_host_later
from .shards import resolve_shard, shard_indices
from .store import ResultStore, load_results, model_identity, skip_summary, skipped_frame, source_sha256

SAMPLE_MODES = ("correct", "wrong", "all")


class Skip(Exception):
    """Raised by a measurement to skip its question, counted with the reason ``"<kind>: <detail>"``."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")


class Timings:
    """Seconds spent per phase of a run, summed over its questions: ``read`` (waiting for the reader thread's
    work on a question), ``decode`` (the reader thread's own decoding, overlapped with the phases below),
    ``prepare`` (processor, vision tower where the family runs it there, token spans; in the reader thread,
    overlapped, where ``prepared_ahead``), ``baseline``, ``measure`` (the measurement without its baseline: the
    knockouts of a sweep) and ``store`` (writing the rows). ``first_question_s``: from the loop's start until the
    first question measured in full (status done) is recorded, which holds one-off costs (compiled layers compile
    then; a pipelined sweep records a question after it launched the next), and ``questions_after_first`` those
    recorded after it: ``(wall - first_question_s) / questions_after_first`` is their rate."""

    PHASES = ("read", "decode", "prepare", "baseline", "measure", "store")

    def __init__(self):
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self.questions = 0  # questions run (not those read back from a store)
        self.wall = 0.0  # the whole loop, store reads included
        self.prepared_ahead = False  # whether ``prepare`` ran in the reader thread
        self.first_question_s = None
        self.questions_after_first = 0

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds

    @staticmethod
    def s_per_question_after_first(timings: dict) -> float | None:
        """Seconds a question after the first measured in full, from :meth:`as_dict`'s fields (None: none after it,
        or a provenance written before the first question was timed)."""
        first, later = timings.get("first_question_s"), timings.get("questions_after_first")
        return (timings["wall_s"] - first) / later if first is not None and later else None

    def as_dict(self) -> dict:
        first = None if self.first_question_s is None else round(self.first_question_s, 3)
        return {"questions": self.questions, "wall_s": round(self.wall, 3), "prepared_ahead": self.prepared_ahead,
                "first_question_s": first, "questions_after_first": self.questions_after_first,
                **{f"{k}_s": round(v, 3) for k, v in self.seconds.items()}}


def _sync(fm) -> None:
    """Wait for ``fm``'s GPU, so that a phase's time holds its own kernels (CUDA runs them asynchronously)."""
    if fm.device.type == "cuda":
        torch.cuda.synchronize(fm.device)


def prepares_ahead(fm) -> bool:
    """Whether the reader thread also prepares the questions: on a GPU. On the CPU the host is the device, and a
    second thread's matrix products could differ in their last bits from the main thread's (another thread
    count), changing the book's numbers."""
    return fm.device.type == "cuda"


def _reader_view(fm):
    """``fm`` for the reader thread: the same model and adapter, its own copy of the processor (a fast tokenizer
    that two threads use at once can fail with "Already borrowed")."""
    view = copy.copy(fm)
    view.processor = copy.deepcopy(fm.processor)
    return view


class VideoReader:
    """Reads the videos of the questions to come in one background thread, ``ahead`` questions ahead of the one
    being measured, so that decoding overlaps the GPU work; given ``fm``, also prepares them there
    (:meth:`FlowModel.prepare_sample` on :func:`_reader_view`; its GPU work goes to the same stream, in order).
    :meth:`take` returns a question's clip, or its prepared input with ``fm``, or raises what reading or
    preparing it raised (a :class:`BenchmarkError` becomes a ``video`` skip, as without the thread)."""

    def __init__(self, samples, order, num_frames: int, timings: Timings, ahead: int = 2, fm=None):
        self.samples, self.num_frames, self.timings, self.ahead = samples, num_frames, timings, ahead
        self.fm = None if fm is None else _reader_view(fm)
        timings.prepared_ahead = fm is not None
        self.order = list(order)  # the questions to run, in the order they run
        self.position = {i: p for p, i in enumerate(self.order)}
        # the thread's current device is the model's (a CUDA device is set per thread)
        device = fm.device if fm is not None and fm.device.type == "cuda" else None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flowutils-video",
                                       initializer=torch.cuda.set_device if device else None,
                                       initargs=(device,) if device else ())
        self.futures, self.next = {}, 0  # futures by position; the next position to submit

    def _read(self, i: int):
        start = time.perf_counter()
        try:
            clip = question_clip(self.samples[i], self.num_frames)
        finally:
            self.timings.add("decode", time.perf_counter() - start)
        if self.fm is None:
            return clip
        start = time.perf_counter()
        try:
            with torch.no_grad():  # grad mode is per thread
                return self.fm.prepare_sample(self.samples[i], clip=clip)
        finally:
            self.timings.add("prepare", time.perf_counter() - start)

    def take(self, i: int):
        """The clip of question ``i`` (its place in ``samples``), or its prepared input; submits the reads of the next
        ``ahead``."""
        p = self.position[i]
        while self.next < min(p + 1 + self.ahead, len(self.order)):
            self.futures[self.next] = self.pool.submit(self._read, self.order[self.next])
            self.next += 1
        for passed in [q for q in self.futures if q < p]:  # questions not run after all (``per_task``)
            self.futures.pop(passed).cancel()
        future = self.futures.pop(p)
        start = time.perf_counter()
        try:
            return future.result()
        finally:
            self.timings.add("read", time.perf_counter() - start)

    def close(self) -> None:
        # waits for the question in flight: its GPU work and timings end with the run
        self.pool.shutdown(wait=True, cancel_futures=True)


class Question:
    """One question as a measurement sees it: ``sample``, ``index`` (its place in the sample list, which
    seeds per-question random draws), ``prepared`` (:meth:`FlowModel.prepare_sample`'s input, ``sample_id``
    set to the question's id) and the baseline forward, run on first use."""

    def __init__(self, fm, sample, index: int, prepared, timings: Timings | None = None, check_later: bool = False):
        self.fm, self.sample, self.index, self.prepared = fm, sample, index, prepared
        self.timings = timings
        # the baseline's NaN/inf check left to the runner, when it reads the rows: reading the logits now would wait
        # for the device's queue (the previous question's knockouts, where the runner pipelines)
        self.check_later = check_later

    @property
    def sample_id(self) -> str:
        return self.prepared.sample_id

    @functools.cached_property
    def baseline(self):
        """The unmodified forward (:func:`flowutils.engine.run_baseline`); NaN or inf logits skip the question."""
        start = time.perf_counter()
        base = run_baseline(self.fm, self.prepared)
        if not self.check_later:
            require_finite(base.logits, "baseline logits")  # reads the logits: the GPU is done with them
        if self.timings is not None:
            self.timings.add("baseline", time.perf_counter() - start)
        return base

    @functools.cached_property
    def predicted(self) -> int:
        """The token the model answers at baseline (argmax of the last position's logits)."""
        return int(self.baseline.logits.argmax())

    @property
    def correct(self) -> bool:
        return self.predicted == self.prepared.gold_id


def require_finite(logits, what: str, labels=None) -> None:
    """Skip the question (``non-finite``) if ``logits`` hold NaN or inf; ``labels`` name the rows (plans)."""
    if labels is None:
        if not torch.isfinite(logits).all():
            raise Skip("non-finite", f"{what} contain NaN or inf")
        return
    require_finite_rows(torch.isfinite(logits).all(-1), what, labels)


def require_finite_rows(finite, what: str, labels) -> None:
    """Skip the question (``non-finite``) unless every row is finite (``finite``: ``[rows]`` booleans, e.g.
    ``torch.isfinite(logits).all(-1)``); ``labels`` name the rows (plans)."""
    if not finite.all():
        bad = [labels[i] for i in (~finite).nonzero().flatten().tolist()]
        raise Skip("non-finite", f"{what} contain NaN or inf under {bad[:5]}")


def context_length(fm) -> int | None:
    """The most positions ``fm``'s language model was built for (``max_position_embeddings``), or None."""
    config = fm.model.config
    return getattr(getattr(config, "text_config", config), "max_position_embeddings", None)


def check_context(fm, prepared) -> None:
    """Skip the question (``context``) if its prompt is longer than ``fm``'s context: past the positions it was
    trained for the model still answers, but not as it would (Vicuna's 4,096 against 32 frames of LLaVA-NeXT)."""
    limit, n = context_length(fm), prepared.layout.n
    if limit is not None and n > limit:
        raise Skip("context", f"prompt of {n} tokens ({len(prepared.layout.video)} video tokens) exceeds "
                              f"{fm.name}'s context of {limit} positions (max_position_embeddings); use fewer frames")


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def knockout_with_retry(fm, question: Question, plans, backend: str, batch_size: int, wait: bool = True,
                        reduce=None):
    """Knockout logits of ``plans`` on ``question`` (its baseline reused); on out-of-memory, free the cache
    and retry with half the batch, down to one plan, then skip the question (``oom``). ``wait=False``: a
    function that returns them; ``reduce``: what is returned instead of them (:func:`flowutils.engine.knockout_logits`)."""
    base = question.baseline
    while True:
        try:
            return knockout_logits(fm, question.prepared, plans, backend, batch_size=batch_size, baseline=base,
                                   wait=wait, reduce=reduce)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not _is_oom(err):
                raise
            if batch_size <= 1:
                raise Skip("oom", f"out of memory even with one plan per batch ({_first_line(err)})") from err
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size //= 2


# ----------------------------------------------------------------------------- checks before any work
def is_integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def choice_problems(what: str, value, valid) -> list[str]:
    """``["unknown <what> <value>; valid: <valid>"]`` if ``value`` is not one of ``valid``, else none."""
    return [] if value in valid else [f"unknown {what} {value!r}; valid: {valid}"]


def count_problems(what: str, value) -> list[str]:
    """``["<what> must be an integer >= 1, ..."]`` unless ``value`` is one."""
    return [] if is_integer(value) and value >= 1 else [f"{what} must be an integer >= 1, got {value!r}"]


def layer_problems(what: str, layers, n_layers: int) -> list[str]:
    """Problems with ``layers``: a non-empty list of distinct integers in ``0..n_layers-1``."""
    bad = [l for l in layers if not (is_integer(l) and 0 <= l < n_layers)] if not isinstance(layers, str) else [layers]
    if bad or not len(layers):
        return [f"{what} must be a non-empty list of integers in 0..{n_layers - 1}, got {layers!r} (bad: {bad})"]
    if len(set(layers)) != len(layers):
        return [f"{what} contain duplicates: {list(layers)}"]
    return []


def sample_id(sample, index: int) -> str:
    """A question's id: its ``sample_id``, else ``task/index``."""
    return getattr(sample, "sample_id", None) or f"{sample.task}/{index}"


def check_samples(samples, ids, num_frames) -> list[str]:
    """Problems with the question list itself: empty, duplicate ids, in-memory videos too short."""
    if not samples:
        return ["the sample list is empty: nothing to measure (check tasks / n_per_task)"]
    problems = []
    seen, dup = set(), []
    for sid in ids:
        (dup.append(sid) if sid in seen else seen.add(sid))
    if dup:
        problems.append(f"sample ids must be unique (the store resumes by id), duplicated: {sorted(set(dup))[:10]}; "
                        "give samples distinct sample_id attributes")
    if is_integer(num_frames):
        short = [f"{sid} ({len(s.frames)} frames)" for s, sid in zip(samples, ids)
                 if getattr(s, "frames", None) is not None and len(s.frames) < num_frames]
        if short:
            problems.append(f"{len(short)} in-memory video(s) have fewer frames than num_frames={num_frames}: "
                            f"{short[:10]}")
    return problems


def sample_fingerprint(sample) -> str:
    """sha256 of what a question is: its text, candidates, answer, interval and video (the frames of an
    in-memory video; the file name and size of a video on disk)."""
    h = hashlib.sha256()
    for part in (sample.task, sample.question, *sample.candidates, "|", sample.answer, str(getattr(sample, "bound", None))):
        h.update(str(part).encode() + b"\0")
    if hasattr(sample, "video_path"):
        path = Path(sample.video_path)
        h.update(f"{path.name}|{path.stat().st_size if path.exists() else -1}".encode())
    else:
        h.update(memoryview(sample.frames.tobytes()))
    return h.hexdigest()


def run_key(fm, analysis: str, params: dict, sample_mode: str, per_task, num_frames: int, benchmark=None) -> dict:
    """What a result set's key hashes (see :mod:`.store`)."""
    from .. import __version__

    return {"analysis": analysis, **params, "model": model_identity(fm), "benchmark": benchmark,
            "sample_mode": sample_mode, "per_task": per_task, "num_frames": num_frames, "flowutils": __version__,
            "flowutils_source": source_sha256(), "bypasses": list(fm.adapter.bypasses)}


# ----------------------------------------------------------------------------- the loop
def _outcome(run) -> tuple:
    """``run()``'s ``(status, rows, reason)``; a :class:`Skip`, or running out of memory, is the status ``skipped``
    with its reason."""
    try:
        return run()
    except Skip as skip:
        return "skipped", [], str(skip)
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not _is_oom(err):
            raise
        return "skipped", [], f"oom: out of memory ({_first_line(err)})"


@torch.no_grad()
def _question(fm, sample, index: int, sid: str, measure, sample_mode: str, take, timings: Timings,
              pipelined: bool = False, check_later: bool = False):
    """``(status, rows, reason)`` of one question (see :data:`flowutils.analysis.store.STATUSES`); ``take()``
    returns its video, or its prepared input where the reader thread prepares ahead. ``pipelined``: ``measure``
    returns a function that reads the rows, and ``rows`` is that function (read by :func:`_read_rows`), which
    first checks the baseline's logits where ``check_later``."""

    def run():
        try:
            prepared = take()
            if not timings.prepared_ahead:
                start = time.perf_counter()
                prepared = fm.prepare_sample(sample, clip=prepared)
                _sync(fm)
                timings.add("prepare", time.perf_counter() - start)
        except BenchmarkError as err:
            raise Skip("video", str(err)) from err
        except LayoutError as err:
            raise Skip("spans", str(err)) from err
        prepared.sample_id = sid
        check_context(fm, prepared)
        question = Question(fm, sample, index, prepared, timings, check_later)
        if sample_mode != "all" and question.correct != (sample_mode == "correct"):
            return "excluded", [], ""
        start, before = time.perf_counter(), timings.seconds["baseline"]
        rows = measure(question)
        if pipelined:
            base = question.__dict__.get("baseline")  # functools.cached_property's value, where it ran
            if check_later and base is not None:
                rows = functools.partial(_checked, to_host_later(base.logits), rows)
        else:
            rows = list(rows)
            _sync(fm)
        timings.add("measure", time.perf_counter() - start - (timings.seconds["baseline"] - before))
        return "done", rows, ""

    return _outcome(run)


def _checked(baseline_logits, rows) -> list:
    """``rows()``, unless the baseline's logits (``baseline_logits()``: on their way to the host) hold NaN or inf
    (the question is skipped, as the baseline's own check would have skipped it)."""
    require_finite(baseline_logits(), "baseline logits")
    return rows()


@torch.no_grad()
def _read_rows(rows, timings: Timings) -> tuple:
    """``(status, rows, reason)`` of a question whose measurement returned a function: its rows, read now (the
    wait for its device work counts as ``measure``; the function waits for its own copies, not for the device's
    whole queue), or its skip."""

    def run():
        start = time.perf_counter()
        out = list(rows())
        timings.add("measure", time.perf_counter() - start)
        return "done", out, ""

    return _outcome(run)


def pipelines(fm) -> bool:
    """Whether the runner reads a pipelined measurement's rows (``run_questions(pipelined=True)``: the sweep's,
    :func:`flowutils.analysis.sweep.launch_sweep`) only after it has queued the next question's work: on a GPU,
    so that the device works through one question's knockouts while the host writes the previous one's rows
    and launches the next baseline and knockouts. The same operations in the same order on the device, so the
    same numbers; on the CPU nothing runs ahead of the host, and the rows are read at once. The host still waits
    once a question where the model's own forward reads a value back (transformers' check of the number of video
    tokens, in every family but PLLaVA, whose forward takes the embeddings)."""
    return fm.device.type == "cuda"


def run_questions(fm, samples, measure, *, analysis: str, num_frames: int, params: dict | None = None,
                  sample_mode: str = "all", per_task: int | None = None, problems=(), out=None, benchmark=None,
                  shard: int | None = None, num_shards: int | None = None, progress: bool = True,
                  pipelined: bool = False):
    """Run ``measure`` (:class:`Question` -> rows) on each question of ``samples``; returns a pandas DataFrame.

    ``analysis``: the analysis's name (messages, progress bar, store key); ``params``: its parameters
    (part of the store key, JSON-able); ``problems``: what the analysis found wrong with them (reported
    with the runner's own, before any work). ``sample_mode``: ``"correct"``/``"wrong"`` keep the
    questions answered so at baseline, ``"all"`` every one. ``per_task``: at most this many questions
    of a task are measured (done); later ones of that task are not run. ``out``: a results directory
    (:mod:`.store`); ``benchmark``: what the samples come from, part of the key. ``shard``/``num_shards``:
    run only this shard's questions (default: torchrun's ``RANK``/``WORLD_SIZE``, else all). ``pipelined``:
    ``measure`` only queues its device work and returns a function that reads the rows; on a GPU they are read
    after the next question's work is queued (:func:`pipelines`).

    The rows of the questions, in their order; ``attrs["skipped"]``: records (``sample_id``, ``task``,
    ``kind``, ``reason``) of the skipped questions; ``attrs["store"]``: the result set's directory
    (None without ``out``).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    samples = list(samples)
    ids = [sample_id(s, i) for i, s in enumerate(samples)]
    problems = [*problems, *choice_problems("sample_mode", sample_mode, SAMPLE_MODES),
                *count_problems("num_frames", num_frames),
                *(count_problems("per_task", per_task) if per_task is not None else []),
                *check_samples(samples, ids, num_frames)]
    if problems:
        raise ValueError(f"{analysis} on {fm.name}: {len(problems)} problem(s):\n- " + "\n- ".join(problems))
    shard, num_shards = resolve_shard(shard, num_shards)
    store = None
    if out is not None:
        key = run_key(fm, analysis, params or {}, sample_mode, per_task, num_frames, benchmark)
        store = ResultStore(out, key, shard, num_shards, fm.device)
    done = Counter()  # questions done per task (per_task)
    excluded = 0  # questions outside the sample mode (require_rows says so)
    covered, frames, skipped = [], [], []  # covered: the questions this run answers for, in order
    indices = list(shard_indices(len(samples), shard, num_shards))
    timings, reader, start = Timings(), None, time.perf_counter()
    # one question's rows read after the next question's launch; not with per_task, which must know a question's
    # status before it decides to run the next
    overlap, pending = pipelined and pipelines(fm) and per_task is None, None

    def tally(task: str, status: str) -> None:
        nonlocal excluded
        done[task] += status == "done"
        excluded += status == "excluded"

    def record(sample, sid: str, fingerprint, status: str, rows, reason: str) -> None:
        if callable(rows):
            status, rows, reason = _read_rows(rows, timings)
        timings.questions += 1
        written = time.perf_counter()
        if store is not None:
            store.record(sid, sample.task, fingerprint, status, rows, reason)
        elif rows:
            frames.append(pd.DataFrame(rows))
        elif status == "skipped":
            skipped.append((sid, sample.task, reason))
        timings.add("store", time.perf_counter() - written)
        if timings.first_question_s is not None:
            timings.questions_after_first += 1
        elif status == "done":
            timings.first_question_s = time.perf_counter() - start
        tally(sample.task, status)

    def record_pending() -> None:
        nonlocal pending
        if pending is not None:
            ready, pending = pending, None  # cleared first: a question is never recorded twice
            record(*ready)

    try:  # the store is closed (its shard's lock released) whatever happens, a notebook's kept traceback too
        finished = store.finished() if store is not None else {}
        # a question skipped for what it was is tried again once that changed (a repaired video, say)
        changed = {ids[i] for i in indices if finished.get(ids[i], (None, None))[1] == "skipped"
                   and finished[ids[i]][0] != sample_fingerprint(samples[i])}
        finished = {sid: stored for sid, stored in finished.items() if sid not in changed}
        reader = VideoReader(samples, [i for i in indices if ids[i] not in finished], num_frames, timings,
                             fm=fm if prepares_ahead(fm) else None)
        try:
            for i in tqdm(indices, disable=not progress,
                          desc=f"{analysis} {fm.name}" + (f" shard {shard}/{num_shards}" if num_shards > 1 else "")):
                sample, sid = samples[i], ids[i]
                if per_task is not None and done[sample.task] >= per_task:
                    continue
                covered.append(sid)
                fingerprint = sample_fingerprint(sample) if store is not None else None
                if sid in finished:
                    stored, status = finished[sid]
                    if stored != fingerprint:
                        raise ValueError(f"{store.dir}: question {sid!r} is stored with other content (question, "
                                         "candidates, answer or video changed); use another results directory")
                    tally(sample.task, status)
                    continue
                outcome = (sample, sid, fingerprint, *_question(
                    fm, sample, i, sid, measure, sample_mode, functools.partial(reader.take, i), timings, pipelined,
                    check_later=overlap and sample_mode == "all"))
                record_pending()  # the previous question's rows, now that this one's work is queued
                if overlap and callable(outcome[4]):
                    pending = outcome
                else:
                    record(*outcome)
            record_pending()
        except BaseException as err:
            if pending is not None:  # measured before the failure (an interrupt, say): kept, so a resume skips it
                question = pending[1]
                try:
                    record_pending()
                except Exception as lost:
                    err.add_note(f"{question}, measured before this error, could not be stored: {lost!r}")
            raise
    finally:
        try:
            if reader is not None:
                reader.close()
        finally:
            timings.wall = time.perf_counter() - start
            if store is not None:
                store.provenance["timings"] = timings.as_dict()
                store.close()
    if store is None:
        table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        frame = skipped_frame(*zip(*skipped)) if skipped else skipped_frame([], [], [])
        table.attrs["skipped"] = frame.to_dict("records")
        table.attrs.update(store=None, excluded=excluded, sample_mode=sample_mode, timings=timings.as_dict())
        return table
    wanted = {sid: n for n, sid in enumerate(covered)}
    stored = load_results(store.dir, sample_ids=wanted)
    if len(stored):
        order = stored.sample_id.map(wanted)
        stored = stored.iloc[order.argsort(kind="stable")].reset_index(drop=True)
    stored.attrs["skipped"] = [r for r in stored.attrs["skipped"] if r["sample_id"] in wanted]
    stored.attrs.update(store=str(store.dir), excluded=excluded, sample_mode=sample_mode, timings=timings.as_dict())
    return stored


def require_rows(table, what: str):
    """``table`` (a table of :func:`run_questions`) if it has rows; else a ``ValueError`` that says why it has none
    (questions excluded by the sample mode, skipped ones and why) and what to change. Notebooks call it on
    an analysis's table before they plot or index it, where an empty table would end in a ``KeyError``."""
    if len(table):
        return table
    excluded, mode = table.attrs.get("excluded", 0), table.attrs.get("sample_mode")
    why = [f"{excluded} question(s) excluded by sample_mode={mode!r} (the model does not answer them "
           f"{'correctly' if mode == 'correct' else 'wrongly'} at baseline)"] if excluded else []
    raise ValueError(f"{what}: no rows to show. " + "; ".join(why + [skip_summary(table.attrs.get("skipped"))])
                     + ". Try sample_mode='all', more questions (n_per_task, tasks) or another num_frames")
