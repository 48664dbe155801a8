"""The result store of the analyses: crash-safe, resumable, one file per writer, shards merged on load.

Layout of a results directory ``root`` (the ``out`` of :func:`flowutils.analysis.runner.run_questions`,
so of :func:`flowutils.analysis.sweep.run_sweep` and every other analysis)::

    root/<key>/params.json                 the result set's parameters (what <key> hashes)
    root/<key>/shard-<i>-of-<n>.sqlite     one SQLite file per writer (a rank, an array task, one process)
    root/<key>/shard-<i>-of-<n>.lock       held (flock) by the one process writing that shard; names it
    root/<key>/provenance-<i>-of-<n>.json  that writer's package versions, git commit, GPU, threads, start/end times

``<key>`` is the first 16 hex digits of the sha256 of the canonical JSON of the parameters
(:func:`flowutils.analysis.runner.run_key`): the analysis and its own parameters (a sweep's flows,
window size and style, sweep layers, backend; Table 3's effective layers and seeds; ...), the
model's identity (:func:`model_identity`: name, class, family, dtype, prompt template, and digests of
the effective config and of the weights as they are in memory), the benchmark and its
manifest hash, the sample mode, frames, the flowutils version and the sha256 of its source
files (an edited engine does not reuse the numbers of the old one). Changing any of them starts
a new result set; rerunning the same analysis finds its directory and skips the questions
already finished there (in any shard).

Why SQLite, one file per writer, one transaction per question:

* A question's rows and its "finished" record are written in one transaction. SQLite's
  journal makes a transaction all or nothing across a crash, a ``SIGKILL`` or a power cut,
  so a half-written question cannot exist (the failure of the old CSV append: half a line,
  accepted on resume). No hand-made file format or append logic is left to get wrong.
* One writer per file: ranks on one host and array tasks on several nodes never write the
  same file. Two processes given the same shard (the same sweep started twice, or torchrun
  ranks all given ``--shard 0``) would store every question twice; an exclusive ``flock`` on
  the shard's lock file, held while the store is open, refuses the second with the first's
  pid and host, and a reader refuses a file holding more rows of a question than it
  recorded. The lock goes with its process, killed or not. The rollback journal (SQLite's default,
  not WAL) is used because WAL needs shared memory on one host and results directories of
  SLURM arrays often sit on network file systems; its one fsync per question costs
  milliseconds against a question's seconds of GPU work.
* SQLite is in the standard library (no dependency on the GPU machines), one file is easy
  to copy, and DuckDB's ``sqlite_scan`` or pandas read it as is. Parquet parts renamed into
  place atomically would also be crash-safe, but need one file per question (thousands of
  small files) or a compaction step.

Floats are stored as 8-byte IEEE doubles, so the numbers read back are bit-identical to
those computed. Questions carry a fingerprint of their content (question, candidates,
answer, video); a resume that finds another content under a finished question's id stops
with an error, unless that question was skipped: then it is tried again (its video repaired, say: the
fingerprint holds a video file's name and size). Where several shard files hold one question, a record that is not a
skip wins over a skip (:func:`settled`).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import platform
import socket
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path

from ..data.paths import write_atomic

SHARD_GLOB = "shard-*-of-*.sqlite"
STATUSES = ("done", "excluded", "skipped")  # rows written / outside sample_mode / skipped with a reason
RETRIED_SKIPS = ("oom",)  # skip kinds that a rerun tries again (they depend on the machine, not the question)
_SQL_TYPES = {bool: "BOOLEAN", int: "INTEGER", float: "REAL", str: "TEXT"}


class StoreError(ValueError):
    """A results directory is unreadable or was written by another run (the message names the file)."""


def read_params(path: Path) -> dict:
    """A result set's ``params.json``; a ``StoreError`` naming the file if it is no JSON object."""
    try:
        params = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{path}: not a readable params.json ({err}); it records the parameters of the result set "
                         "in its directory: restore it, or move the directory away to start that set again") from err
    if not isinstance(params, dict):
        raise StoreError(f"{path}: params.json holds a {type(params).__name__}, not the parameters of a result set "
                         "(a JSON object); restore it, or move the directory away")
    return params


def sweep_key(params: dict) -> str:
    """First 16 hex digits of the sha256 of ``params``' canonical JSON."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.cache
def source_sha256() -> str:
    """sha256 of flowutils' own ``*.py`` files (paths and bytes): a development checkout changes its
    numbers without changing its version string."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def state_sha256(model) -> str:
    """A digest of ``model``'s state dict as it is now (names, dtypes, shapes, values), computed where the
    tensors lie.

    Each matrix contributes the XOR of every row and of every column (``torch.hash_tensor``: a
    pass over the weights where they lie, no copy to the host), vectors and scalars their bytes:
    cheap enough to take at every run, so that an edit made in memory after loading (``.data``
    writes included, which no version counter sees) keys its own results. A changed value changes
    its row's and its column's XOR; swapped values change one of them. Weights offloaded to disk
    (meta tensors) have no values here: refused."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach()
        if tensor.is_meta:
            raise StoreError(f"{name} is offloaded (a meta tensor): the store cannot tell these weights from "
                             "others; load the model onto GPUs or the CPU (device_map without disk offload), "
                             "or run without a results directory")
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        if tensor.dim() < 2:
            h.update(tensor.to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        else:
            rows = tensor.reshape(-1, tensor.shape[-1])
            for dim in (1, 0):
                h.update(torch.hash_tensor(rows, dim=dim).to("cpu").numpy().tobytes())
    return h.hexdigest()


# config entries that say where the model came from or which library wrote it, not what it computes
_CONFIG_PROVENANCE = ("_name_or_path", "transformers_version")


def config_sha256(config) -> str:
    """sha256 of a model config's canonical JSON, every attribute set on it (``config_overrides`` included),
    without :data:`_CONFIG_PROVENANCE`."""
    def clean(d):
        return {k: clean(v) if isinstance(v, dict) else v for k, v in d.items() if k not in _CONFIG_PROVENANCE}

    return hashlib.sha256(json.dumps(clean(config.to_dict()), sort_keys=True, default=str).encode()).hexdigest()


def model_identity(fm) -> dict:
    """What makes two models the same for the store: name, class, family, dtype and prompt template, the
    digest of the effective config (:func:`config_sha256`) and of the weights as they are in memory now
    (:func:`state_sha256`), not of the files they were loaded from. The attention implementation is
    not part of it: the engine runs every forward through its own (:mod:`flowutils.engine.arm`)."""
    return {"name": fm.name, "class": type(fm.model).__name__, "family": fm.adapter.family, "dtype": str(fm.dtype),
            "template": getattr(fm.template, "name", str(fm.template)),
            "config_sha256": config_sha256(fm.model.config), "state_sha256": state_sha256(fm.model)}


def provenance(device=None) -> dict:
    """Package versions, git commit (if the package sits in a git checkout), host, GPU and CPU threads of this writer."""
    import numpy
    import pandas
    import torch
    import transformers

    from .. import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    gpu = None
    if device is not None and torch.device(device).type == "cuda":
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"flowutils": __version__, "git_commit": commit, "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "sqlite": sqlite3.sqlite_version, "host": socket.gethostname(),
            "device": str(device) if device is not None else None, "gpu": gpu,
            "threads": torch.get_num_threads()}  # CPU numbers depend on it


def _now() -> str:
    # milliseconds: a shard's sweep time (finished - started) is read from these
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _connect(path: Path) -> sqlite3.Connection:
    try:
        con = sqlite3.connect(path, isolation_level=None)  # transactions are explicit (BEGIN ... COMMIT)
        con.execute("CREATE TABLE IF NOT EXISTS questions (sample_id TEXT PRIMARY KEY, task TEXT, fingerprint TEXT, "
                    "status TEXT NOT NULL, reason TEXT, n_rows INTEGER)")
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not a readable result store ({err}); move it away to start this shard again") from err
    return con


def _lock(path: Path, shard: int, num_shards: int):
    """The open lock file ``path``, flocked by this process; a ``StoreError`` naming the process that holds it."""
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise StoreError(f"{path}: shard {shard} of {num_shards} of this result set is being written by {holder}; "
                         "two writers would store every question twice. Wait for it to finish, or run another "
                         "shard (--shard/--num-shards; under torchrun leave them out: each rank takes its own)") from None
    f.truncate(0)
    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {_now()}\n")
    f.flush()
    return f


class ResultStore:
    """One result set's directory ``root/<key>``; this process writes shard ``shard`` of ``num_shards``."""

    def __init__(self, root, params: dict, shard: int = 0, num_shards: int = 1, device=None):
        self.params = params
        self.dir = Path(root) / sweep_key(params)
        self.dir.mkdir(parents=True, exist_ok=True)
        params_file = self.dir / "params.json"
        if params_file.is_file():
            stored = read_params(params_file)
            if stored != json.loads(json.dumps(params, default=str)):
                raise StoreError(f"{params_file}: parameters differ from this run's under the same key; "
                                 "remove the directory")
        else:
            write_atomic(params_file, json.dumps(params, indent=1, sort_keys=True, default=str))
        name = f"{shard:03d}-of-{num_shards:03d}"
        self.path = self.dir / f"shard-{name}.sqlite"
        self.lock = _lock(self.dir / f"shard-{name}.lock", shard, num_shards)
        try:  # released at once on failure: a traceback kept by a notebook would hold it otherwise
            self.provenance_file = self.dir / f"provenance-{name}.json"
            self.provenance = {**provenance(device), "shard": shard, "num_shards": num_shards, "started": _now(),
                               "finished": None}
            write_atomic(self.provenance_file, json.dumps(self.provenance, indent=1))
            self.con = _connect(self.path)
        except BaseException:
            self.lock.close()
            raise

    def finished(self) -> dict[str, tuple[str, str]]:
        """``{sample_id: (fingerprint, status)}`` of the questions finished in any shard file of this result
        set (skips of a kind in :data:`RETRIED_SKIPS` are not finished: a rerun tries them again)."""
        q = settled(load_questions(self.dir))
        keep = (q.status != "skipped") | ~q.reason.str.split(":").str[0].isin(RETRIED_SKIPS)
        return dict(zip(q.sample_id[keep], zip(q.fingerprint[keep], q.status[keep])))

    def record(self, sample_id: str, task: str, fingerprint: str, status: str, rows=(), reason: str = "") -> None:
        """Write one question (its rows and its status) in one transaction."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {STATUSES}")
        rows = list(rows)
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                columns = list(rows[0])
                types = [_SQL_TYPES.get(type(v), "TEXT") for v in rows[0].values()]
                con.execute("CREATE TABLE IF NOT EXISTS rows (seq INTEGER PRIMARY KEY, "
                            + ", ".join(f'"{c}" {t}' for c, t in zip(columns, types)) + ")")
                names = ", ".join(f'"{c}"' for c in columns)
                con.executemany(f"INSERT INTO rows ({names}) VALUES ({', '.join('?' * len(columns))})",
                                [tuple(r[c] for c in columns) for r in rows])
            con.execute("INSERT OR REPLACE INTO questions VALUES (?, ?, ?, ?, ?, ?)",
                        (sample_id, task, fingerprint, status, reason, len(rows)))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.provenance["finished"] = _now()
        write_atomic(self.provenance_file, json.dumps(self.provenance, indent=1))
        self.con.close()
        self.lock.close()  # releases the flock


def shard_files(path) -> list[Path]:
    """The shard files of the result set ``path``; a ``StoreError`` if ``path`` is none (a results directory
    above result sets lists them)."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"no result set at {path} (a directory root/<key> written by run_questions)")
    if not (path / "params.json").is_file():
        sets = sorted(d for d in path.iterdir() if (d / "params.json").is_file())
        if sets:
            listed = "\n".join(f"- {d}: {_describe(d)}" for d in sets)
            raise StoreError(f"{path} is a results directory (an --out), not one result set; pass one of its "
                             f"{len(sets)} result set(s):\n{listed}")
        raise StoreError(f"{path}: no params.json, so not a result set (a directory root/<key> written by "
                         "run_questions), and no result set below it")
    return sorted(path.glob(SHARD_GLOB))


def _describe(result_set: Path) -> str:
    """``run_sweep, model toy-videollm, k=3, ...``: what a result set holds, from its params.json."""
    p = read_params(result_set / "params.json")
    shown = {k: v for k, v in p.items() if k not in ("analysis", "model", "flowutils_source", "benchmark", "bypasses")}
    model = p.get("model", {}).get("name") if isinstance(p.get("model"), dict) else p.get("model")
    return ", ".join([str(p.get("analysis")), f"model {model}", *(f"{k}={v}" for k, v in shown.items())])


def _read(file: Path, query: str, params=()):
    import pandas as pd

    try:
        # read-write: a writer killed mid-transaction leaves a hot journal, which the next reader rolls back
        con = sqlite3.connect(file, timeout=60)
        try:
            frame = pd.read_sql_query(query, con, params=params)
            types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(rows)")}
        finally:
            con.close()
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
        if "no such table: rows" in str(err):
            return pd.DataFrame()
        raise StoreError(f"{file}: not a readable result store ({err})") from err
    for column, sql_type in types.items():  # SQLite has no boolean: 0/1 back to bool
        if sql_type == "BOOLEAN" and column in frame:
            frame[column] = frame[column].astype(bool)
    return frame


def _check_row_counts(file: Path) -> None:
    """A ``StoreError`` if ``file`` holds rows of a question other than the number its record says (two
    writers of one file, from before the lock, would have stored them twice)."""
    bad = _read(file, "SELECT q.sample_id, q.n_rows, COALESCE(c.stored, 0) AS stored FROM questions q LEFT JOIN "
                      "(SELECT sample_id, COUNT(*) AS stored FROM rows GROUP BY sample_id) c USING (sample_id) "
                      "WHERE COALESCE(c.stored, 0) != q.n_rows")
    if len(bad):
        listed = [f"{r.sample_id} ({r.stored} rows, {r.n_rows} recorded)" for r in bad.head(5).itertuples()]
        raise StoreError(f"{file}: {len(bad)} question(s) stored with more or fewer rows than recorded, e.g. "
                         f"{listed}: two processes wrote this shard at once. Its numbers cannot be trusted; "
                         "move the file away and run the shard again")


def load_questions(path):
    """Every question's record over all shard files of ``path`` (a ``root/<key>`` directory):
    ``sample_id``, ``task``, ``fingerprint``, ``status``, ``reason``, ``n_rows``, ``shard_file``."""
    import pandas as pd

    frames = [_read(f, "SELECT * FROM questions ORDER BY rowid").assign(shard_file=f.name) for f in shard_files(path)]
    columns = ["sample_id", "task", "fingerprint", "status", "reason", "n_rows", "shard_file"]
    q = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    return q if q is not None else pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def load_results(path, sample_ids=None):
    """All rows of the result set ``path`` (a ``root/<key>`` directory), shards merged, as a DataFrame;
    only those of the questions ``sample_ids`` if given (a rank reads its own, not the whole sweep's).

    A question finished in two shard files (two shardings of one sweep run at once) is taken
    from the first file. ``attrs["skipped"]``: the skipped questions (:func:`load_skipped`);
    ``attrs["params"]``: the sweep's parameters.
    """
    import pandas as pd

    path = Path(path)
    frames, seen = [], set()
    where, params = ("", ()) if sample_ids is None else (
        "WHERE sample_id IN (SELECT value FROM json_each(?))", (json.dumps(list(sample_ids)),))
    for f in shard_files(path):
        _check_row_counts(f)
        rows = _read(f, f"SELECT * FROM rows {where} ORDER BY seq", params)
        if len(rows):
            rows = rows[~rows.sample_id.isin(seen)].drop(columns="seq")
            seen |= set(rows.sample_id)
            frames.append(rows)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    # records, not a DataFrame: pandas compares attrs when concatenating, and DataFrames do not compare to a bool
    table.attrs["skipped"] = load_skipped(path).to_dict("records")
    table.attrs["params"] = read_params(path / "params.json")
    return table


def settled(questions):
    """One record per question of :func:`load_questions`' ``questions``: where several shard files hold one (two
    shardings of a sweep, a skip measured again by a later run), a record that is not a skip wins over a skip, and
    otherwise the first file's."""
    skip = questions.status == "skipped"
    return questions.assign(_skip=skip).sort_values("_skip", kind="stable").drop_duplicates("sample_id") \
        .drop(columns="_skip").sort_index()


def load_skipped(path):
    """The skipped questions of the result set ``path``: ``sample_id``, ``task``, ``kind``, ``reason``."""
    q = settled(load_questions(path))
    q = q[q.status == "skipped"]
    return skipped_frame(q.sample_id, q.task, q.reason)


def skipped_frame(sample_ids, tasks, reasons):
    """``sample_id``, ``task``, ``kind`` (the reason's ``kind:`` prefix), ``reason``."""
    import pandas as pd

    reasons = list(reasons)
    return pd.DataFrame({"sample_id": list(sample_ids), "task": list(tasks),
                         "kind": [r.split(":", 1)[0] for r in reasons], "reason": reasons})


def skip_summary(skipped) -> str:
    """``"3 question(s) skipped: 2 video, 1 oom"`` (or ``"no question skipped"``)."""
    import pandas as pd

    if skipped is None or not len(skipped):
        return "no question skipped"
    skipped = pd.DataFrame(skipped)  # a table's attrs["skipped"] holds records
    counts = skipped.kind.value_counts().sort_index()
    return f"{len(skipped)} question(s) skipped: " + ", ".join(f"{n} {kind}" for kind, n in counts.items())
