"""The gallery's SQLite index of run folders, with full-text search over prompts.

The folders are the truth; this index is a cache kept in the gallery's cache folder and refreshed
incrementally: a folder is re-read only when its modification time changed (details.json is
replaced atomically at each checkpoint, which changes the folder's time), a folder that is gone is
dropped, and broken folders are remembered so they are logged once, not on every refresh. A broken
folder is remembered with its details.json's time and size too, so a details.json repaired in place
(which leaves the folder's time alone) is read again at the next full sweep.

Rows are keyed by folder name: two folders claiming the same run_id are two runs.

Stars and hidden runs are the person's choices, not a cache: they live in their own file
(``marks.sqlite3`` beside the index, attached to every connection), which an index rebuild (a new
INDEX_VERSION, a corrupt index deleted) never touches. They are keyed by folder name too.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from pathlib import Path

from logic import runs

log = logging.getLogger(__name__)

INDEX_VERSION = "5"  # bumped when what is stored per run changes: the index is rebuilt
FULL_SWEEP_S = 15.0      # how often every folder's time is checked even if nothing seemed to move
RECENT_NS = 2_000_000_000  # a folder changed this recently may change again within the same tick
TRACKED_FILES = (runs.ANIM, runs.GIF, runs.THUMB, runs.PREVIEW, runs.METRICS)
COLUMNS = ("name", "run_id", "created", "mode", "model", "status", "raw_status", "prompt",
           "parent_run_id", "files", "image", "details")
RUN_COLUMNS = COLUMNS[:-1]   # details live in their own table: listing rows stay small and fast to scan
SORT_SCAN_MIN = 500          # from this many matches, walk the name index instead of sorting matches
_SELECT = "SELECT runs.*, bodies.details AS details FROM runs JOIN bodies ON bodies.id = runs.id"

_DDL = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, mtime_ns INTEGER NOT NULL,
    run_id TEXT, created TEXT, mode TEXT, model TEXT, status TEXT, raw_status TEXT,
    prompt TEXT, parent_run_id TEXT, files TEXT, image TEXT);
CREATE TABLE IF NOT EXISTS bodies(id INTEGER PRIMARY KEY, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_run_id ON runs(run_id);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, name);
CREATE INDEX IF NOT EXISTS runs_mode ON runs(mode, name);
CREATE INDEX IF NOT EXISTS runs_model ON runs(model, name);
CREATE TABLE IF NOT EXISTS skipped(name TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, details_sig TEXT);
CREATE VIRTUAL TABLE IF NOT EXISTS prompts USING fts5(prompt, tags, tokenize='unicode61 remove_diacritics 2');
"""
# The person's stars and hidden runs: a separate file, never dropped with the cache.
_MARKS_DDL = """
CREATE TABLE IF NOT EXISTS marks.marks(name TEXT PRIMARY KEY, starred INTEGER NOT NULL DEFAULT 0,
                                       hidden INTEGER NOT NULL DEFAULT 0, changed TEXT);
CREATE TABLE IF NOT EXISTS marks.meta(key TEXT PRIMARY KEY, value TEXT);
"""


LABEL_KEYS = ("name", "vqgan", "diffusion", "clip")  # display names; paths, hashes and sizes are not


def model_label(model) -> str:
    """One short label for the models of a run: 'vqgan_imagenet_f16_16384 + ViT-B-32:openai'."""
    if isinstance(model, dict):
        names = [model[k] for k in LABEL_KEYS if isinstance(model.get(k), str) and model[k]]
        return " + ".join(names) or next((v for v in model.values() if isinstance(v, str) and v), "")
    return str(model or "")


def fts_query(text: str) -> str | None:
    """A safe FTS5 query from what a person typed: every word must match, the last as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _file_times(path: Path, details: dict) -> dict[str, int]:
    """Modification times of the files the gallery shows (for cache-busting URLs): regular files
    only, a symlink is not a file of the run."""
    names = list(TRACKED_FILES)
    image = runs.output_image(path, details)
    if image is not None:
        names.append(image.name)
    times = {}
    for name in names:
        try:
            info = os.lstat(path / name)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            times[name] = info.st_mtime_ns
    if image is not None:
        times["@image"] = image.name
    return times


def search_tags(row) -> str:
    """What the one search box finds besides the prompt: mode, model label and status."""
    return f"{row[3]} {row[4]} {row[5]}"


def details_signature(folder: Path) -> str:
    """details.json's time and size: changes when it is rewritten in place, unlike the folder's time."""
    try:
        info = os.lstat(folder / runs.DETAILS)
    except OSError:
        return ""
    return f"{info.st_mtime_ns}:{info.st_size}"


def row_from_folder(path: Path) -> tuple | None:
    """The index row of one run folder, or None when it is not a readable run (logged)."""
    record = runs.read_record(path)
    if record is None:
        if not os.path.lexists(path / runs.DETAILS):
            log.warning("Skipping %s: no details.json (not a run folder, or an empty one)", path)
        return None
    details = record.as_details()
    return row_from_details(path.name, details, _file_times(path, details))


def row_from_details(name: str, details: dict, files: dict) -> tuple:
    """The row of a run from its checked details (``RunRecord.as_details``: every field typed)."""
    status = runs.effective_status(details).get("status") or ""
    run_id = str(details.get("run_id") or name.split("-", 1)[-1])
    return (name, run_id, str(details.get("created") or ""), str(details.get("mode") or ""),
            model_label(details.get("model")), status, str(details.get("status") or ""),
            str(details.get("prompt") or ""), details.get("parent_run_id"),
            json.dumps(files), files.get("@image") or "", json.dumps(details, default=str))


class RunIndex:
    """An SQLite index of ``output_dir``, stored in ``db_path``; safe to use from many threads."""

    def __init__(self, output_dir: Path, db_path: Path, min_refresh_s: float = 1.0,
                 marks_path: Path | None = None):
        self.output_dir = Path(output_dir)
        self.db_path = Path(db_path)
        self.marks_path = Path(marks_path) if marks_path else self.db_path.with_name("marks.sqlite3")
        self.min_refresh_s = min_refresh_s
        self.generation = 0
        self.boot = format(time.time_ns() // 1_000_000 % 10**8, "x")  # version tokens differ per start
        self._lock = threading.Lock()
        self._local = threading.local()
        self._root_mtime: int | None = None
        self._last_refresh = 0.0
        self._last_sweep = 0.0
        self._counts: dict = {}
        self._open_schema()

    # --- connection and schema ------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("ATTACH DATABASE ? AS marks", (str(self.marks_path),))
            conn.execute("PRAGMA marks.journal_mode=WAL")
            conn.executescript(_MARKS_DDL)
            self._local.conn = conn
        return conn

    def _open_schema(self) -> None:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        try:
            version = conn.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        except sqlite3.DatabaseError:
            version = None
        if version is None or version[0] != INDEX_VERSION:
            self._reset(conn)

    def _reset(self, conn: sqlite3.Connection) -> None:
        """Start the cache afresh (new file, or one written by another version)."""
        for table in ("meta", "runs", "bodies", "skipped", "prompts"):
            conn.execute(f"DROP TABLE IF EXISTS main.{table}")  # never the attached marks
        conn.executescript(_DDL)
        conn.execute("INSERT INTO meta VALUES('version', ?)", (INDEX_VERSION,))
        conn.execute("INSERT INTO meta VALUES('output_dir', ?)", (str(self.output_dir),))
        conn.commit()

    # --- refresh ---------------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> bool:
        """Bring the index up to date with the folders; True when anything changed.

        Cheap when nothing moved: one stat of the output folder plus one per active run. Every
        folder is checked when the output folder changed (runs added or removed) or every
        FULL_SWEEP_S seconds (a file replaced inside an old run).
        """
        now = time.monotonic()
        if not force and now - self._last_refresh < self.min_refresh_s:
            return False
        with self._lock:
            if not force and now - self._last_refresh < self.min_refresh_s:
                return False
            changed = self._refresh_locked(force, now)
            self._last_refresh = time.monotonic()
        if changed:
            self.generation += 1
            self._counts.clear()
        return changed

    def _refresh_locked(self, force: bool, now: float) -> bool:
        try:
            root_mtime = self.output_dir.stat().st_mtime_ns
        except OSError:
            root_mtime = None
        conn = self._conn()
        if force or root_mtime != self._root_mtime or now - self._last_sweep > FULL_SWEEP_S:
            changed = self._sweep(conn, runs.scan_run_dirs(self.output_dir))
            self._root_mtime, self._last_sweep = root_mtime, now
        else:
            changed = self._check_watched(conn)
        changed |= self._update_liveness(conn)
        conn.commit()
        return changed

    def _sweep(self, conn: sqlite3.Connection, current: dict[str, int]) -> bool:
        known = dict(conn.execute("SELECT name, mtime_ns FROM runs"))
        known.update(conn.execute("SELECT name, mtime_ns FROM skipped"))
        skipped = dict(conn.execute("SELECT name, details_sig FROM skipped"))
        changed = False
        for name in [name for name in known if name not in current]:
            changed |= self._delete(conn, name)
        stale = [name for name, mtime in current.items() if known.get(name) != mtime
                 or (name in skipped and skipped[name] != details_signature(self.output_dir / name))]
        for count, name in enumerate(stale, 1):
            changed |= self._index_folder(conn, name, current[name])
            if count % 1000 == 0:
                conn.commit()
                log.info("Indexed %d of %d changed run folders", count, len(stale))
        return changed

    def _check_watched(self, conn: sqlite3.Connection) -> bool:
        """Re-stat only the runs that may still change: active ones and very recent ones."""
        rows = conn.execute("SELECT name, mtime_ns FROM runs WHERE raw_status IN (?, ?) OR mtime_ns = 0 "
                            "UNION ALL SELECT name, mtime_ns FROM skipped WHERE mtime_ns = 0",
                            runs.ACTIVE).fetchall()
        changed = False
        for name, mtime in rows:
            try:
                now_mtime = (self.output_dir / name).stat().st_mtime_ns
            except OSError:
                changed |= self._delete(conn, name)
                continue
            if now_mtime != mtime:
                changed |= self._index_folder(conn, name, now_mtime)
        return changed

    def _update_liveness(self, conn: sqlite3.Connection) -> bool:
        """Show as interrupted the active runs whose process died (nothing is written to them)."""
        changed = False
        rows = conn.execute(f"{_SELECT} WHERE raw_status IN (?, ?)", runs.ACTIVE).fetchall()
        for row in rows:
            status = runs.effective_status(json.loads(row["details"])).get("status")
            if status != row["status"]:
                conn.execute("UPDATE runs SET status=? WHERE id=?", (status, row["id"]))
                conn.execute("UPDATE prompts SET tags=? WHERE rowid=?",
                             (f"{row['mode']} {row['model']} {status}", row["id"]))
                changed = True
        return changed

    def _index_folder(self, conn: sqlite3.Connection, name: str, mtime_ns: int) -> bool:
        """(Re-)read one folder; True when the index changed."""
        if time.time_ns() - mtime_ns < RECENT_NS:
            mtime_ns = 0  # may change again within the same clock tick: look again next time
        folder = self.output_dir / name
        signature = details_signature(folder)  # taken before reading: a repair while we read is seen next time
        row = row_from_folder(folder)
        if row is None:
            removed = self._delete(conn, name)
            conn.execute("INSERT OR REPLACE INTO skipped VALUES(?, ?, ?)", (name, mtime_ns, signature))
            return removed
        conn.execute("DELETE FROM skipped WHERE name=?", (name,))
        return self._upsert(conn, row, mtime_ns)

    def _upsert(self, conn: sqlite3.Connection, row: tuple, mtime_ns: int) -> bool:
        """Insert or update one run; True when what the gallery shows of it changed."""
        old = conn.execute(f"{_SELECT} WHERE name=?", (row[0],)).fetchone()
        if old is None:
            cur = conn.execute(f"INSERT INTO runs(mtime_ns, {', '.join(RUN_COLUMNS)}) "
                               f"VALUES(?{', ?' * len(RUN_COLUMNS)})", (mtime_ns, *row[:-1]))
            conn.execute("INSERT INTO bodies VALUES(?, ?)", (cur.lastrowid, row[-1]))
            conn.execute("INSERT INTO prompts(rowid, prompt, tags) VALUES(?, ?, ?)",
                         (cur.lastrowid, row[7], search_tags(row)))
            return True
        old_row = tuple(old[c] for c in COLUMNS)
        if old_row == row:
            conn.execute("UPDATE runs SET mtime_ns=? WHERE id=?", (mtime_ns, old["id"]))
            return False
        sets = ", ".join(f"{c}=?" for c in RUN_COLUMNS)
        conn.execute(f"UPDATE runs SET mtime_ns=?, {sets} WHERE id=?", (mtime_ns, *row[:-1], old["id"]))
        conn.execute("UPDATE bodies SET details=? WHERE id=?", (row[-1], old["id"]))
        if old["prompt"] != row[7] or search_tags(old_row) != search_tags(row):
            conn.execute("UPDATE prompts SET prompt=?, tags=? WHERE rowid=?", (row[7], search_tags(row), old["id"]))
        return True

    def _delete(self, conn: sqlite3.Connection, name: str) -> bool:
        """Forget a folder; True when it was a listed run."""
        old = conn.execute("SELECT id FROM runs WHERE name=?", (name,)).fetchone()
        if old is not None:
            conn.execute("DELETE FROM prompts WHERE rowid=?", (old[0],))
            conn.execute("DELETE FROM bodies WHERE id=?", (old[0],))
            conn.execute("DELETE FROM runs WHERE id=?", (old[0],))
        conn.execute("DELETE FROM skipped WHERE name=?", (name,))
        return old is not None

    def add_rows(self, rows: list[tuple]) -> None:
        """Insert prepared rows directly (benchmarks of search over many prompts)."""
        conn = self._conn()
        for row in rows:
            self._upsert(conn, row, 1)
        conn.commit()
        self.generation += 1
        self._counts.clear()

    # --- queries ---------------------------------------------------------------------------------

    def query(self, q: str = "", mode: str = "", model: str = "", status: str = "",
              limit: int = 24, offset: int = 0, finished_with_image: bool = False,
              starred: bool = False, show_hidden: bool = False) -> tuple[int, list]:
        """(total, rows) for one page, newest first; counts are cached until the index changes.

        ``q`` searches prompts, modes, model labels and statuses; hidden runs are left out unless
        ``show_hidden``; ``starred`` keeps starred runs only."""
        hide = not show_hidden and self._has_hidden()
        where, args = self._where(q, mode, model, status, finished_with_image, starred, hide)
        total = self._count(where, args, only_search=bool(q) and not (mode or model or status or starred
                                                                       or hide or finished_with_image))
        if total == 0 or limit <= 0:
            return total, []
        # Many matches: walk the name index newest first and stop after one page; few: sort them.
        hint = "INDEXED BY sqlite_autoindex_runs_1" if q and total >= SORT_SCAN_MIN else ""
        ids = [r[0] for r in self._conn().execute(
            f"SELECT id FROM runs {hint} {where} ORDER BY name DESC LIMIT ? OFFSET ?", (*args, limit, offset))]
        return total, self._rows(ids)

    def _count(self, where: str, args: list, only_search: bool) -> int:
        key = (self.generation, where, tuple(args))
        total = self._counts.get(key)
        if total is None:
            if only_search and "MATCH" in where:  # the full-text index counts its own matches fast
                sql = "SELECT count(*) FROM prompts WHERE prompts MATCH ?"
            else:
                sql = f"SELECT count(*) FROM runs {where}"
            total = self._conn().execute(sql, args).fetchone()[0]
            self._counts[key] = total
        return total

    def _rows(self, ids: list[int]) -> list:
        """Full rows (with details) for these ids, in the same order."""
        if not ids:
            return []
        found = {r["id"]: r for r in self._conn().execute(
            f"{_SELECT} WHERE runs.id IN ({', '.join('?' * len(ids))})", ids)}
        return [found[i] for i in ids if i in found]

    @staticmethod
    def _where(q, mode, model, status, finished_with_image, starred=False, hide=False) -> tuple[str, list]:
        clauses, args = [], []
        if q:
            match = fts_query(q)
            if match:
                clauses.append("id IN (SELECT rowid FROM prompts WHERE prompts MATCH ?)")
                args.append(match)
            else:
                clauses.append("instr(lower(prompt || ' ' || mode || ' ' || model || ' ' || status), lower(?)) > 0")
                args.append(q)
        for column, value in (("mode", mode), ("model", model), ("status", status)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if finished_with_image:
            clauses.append("status IN ('done', 'stopped') AND image != ''")
        if starred:
            clauses.append("name IN (SELECT name FROM marks.marks WHERE starred = 1)")
        if hide:
            clauses.append("name NOT IN (SELECT name FROM marks.marks WHERE hidden = 1)")
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    def choices(self) -> dict[str, list[str]]:
        """The values the mode, model and status filters can take (cached per generation)."""
        key = (self.generation, "choices")
        if key not in self._counts:
            conn = self._conn()
            self._counts[key] = {
                column: [r[0] for r in conn.execute(
                    f"SELECT DISTINCT {column} FROM runs WHERE {column} != '' ORDER BY {column}")]
                for column in ("mode", "model", "status")}
        return self._counts[key]

    def get(self, key: str):
        """The row of a run by its folder name, else by its run_id when one folder alone claims it;
        None otherwise (two folders with the same run_id: neither hides the other)."""
        conn = self._conn()
        row = conn.execute(f"{_SELECT} WHERE name=?", (key,)).fetchone()
        if row is not None:
            return row
        rows = conn.execute(f"{_SELECT} WHERE run_id=? ORDER BY name DESC LIMIT 2", (key,)).fetchall()
        return rows[0] if len(rows) == 1 else None

    def folders_of(self, run_id: str, limit: int = 10) -> list[str]:
        """The folder names claiming ``run_id`` (to tell a person which to open)."""
        return [r[0] for r in self._conn().execute(
            "SELECT name FROM runs WHERE run_id=? ORDER BY name DESC LIMIT ?", (run_id, limit))]

    def children(self, run_id: str) -> list:
        return self._conn().execute(
            f"{_SELECT} WHERE parent_run_id=? ORDER BY name DESC LIMIT 100", (run_id,)).fetchall()

    def names(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT name FROM runs")}

    # --- stars and hidden runs (the marks file) ---------------------------------------------------

    def marks_of(self, names: list[str]) -> dict[str, dict]:
        """{folder name: {"starred": bool, "hidden": bool}} for the given folders (unmarked: absent)."""
        if not names:
            return {}
        rows = self._conn().execute(
            f"SELECT name, starred, hidden FROM marks.marks WHERE name IN ({', '.join('?' * len(names))})", names)
        return {r["name"]: {"starred": bool(r["starred"]), "hidden": bool(r["hidden"])} for r in rows}

    def set_mark(self, name: str, *, starred: bool | None = None, hidden: bool | None = None) -> dict:
        """Star/unstar or hide/show one folder's run; returns its marks. Writes only the marks file."""
        conn = self._conn()
        with self._lock:
            conn.execute("INSERT OR IGNORE INTO marks.marks(name) VALUES(?)", (name,))
            for column, value in (("starred", starred), ("hidden", hidden)):
                if value is not None:
                    conn.execute(f"UPDATE marks.marks SET {column}=?, changed=? WHERE name=?",
                                 (int(bool(value)), runs.now_iso(), name))
            conn.commit()
            self.generation += 1  # listings, counts and version tokens change with the marks
            self._counts.clear()
        return self.marks_of([name]).get(name, {"starred": False, "hidden": False})

    def _has_hidden(self) -> bool:
        key = (self.generation, "has_hidden")
        if key not in self._counts:
            self._counts[key] = self._conn().execute(
                "SELECT 1 FROM marks.marks WHERE hidden = 1 LIMIT 1").fetchone() is not None
        return self._counts[key]

    def secret(self) -> str:
        """A random token kept in the marks file: forms that change marks must carry it (a page
        open across a restart still works; another site cannot read it)."""
        conn = self._conn()
        row = conn.execute("SELECT value FROM marks.meta WHERE key='token'").fetchone()
        if row is None:
            import secrets
            conn.execute("INSERT OR IGNORE INTO marks.meta VALUES('token', ?)", (secrets.token_urlsafe(24),))
            conn.commit()
            row = conn.execute("SELECT value FROM marks.meta WHERE key='token'").fetchone()
        return row[0]
