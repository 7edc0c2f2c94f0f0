"""The curation database: consultations, candidate replies with provenance, annotators, work
slots and decisions, in one SQLite file in WAL mode.

Everything the web tool does goes through `Store`, and so can a script (the demo drives a whole
curation without a browser):

    store = Store("curation.sqlite")
    load_file(store, "with_candidates.jsonl")         # or generate_candidates(store, prompts, ["tiny"])
    while (item := store.claim("script")) is not None:
        best, *rest = item.candidates
        store.submit("script", item.id, best=best.id, rejected={c.id: "unhelpful" for c in rest})
    export(store, "behaviour/")                        # sft.jsonl, dpo.jsonl, agreement.json

How work is handed out. Each item has one *slot* per annotation it needs: one, or two for the
items picked for overlap (agreement). An annotator `claim`s a slot with a single
`UPDATE … WHERE rowid = (SELECT … WHERE assigned_to IS NULL OR lease expired … LIMIT 1)` inside
a `BEGIN IMMEDIATE` transaction, so SQLite's one-writer lock makes the claim atomic across
threads and processes: two annotators never hold the same slot, and one annotator never holds two
slots of one item. A claim carries a lease; a slot whose holder went away returns to the pool
when the lease runs out. A decision is committed in the same transaction that marks its slot
done (synchronous=FULL), so a server killed at any point keeps every decision it answered for.
Decisions are never deleted: undo stamps `undone` and hands the slot back to its annotator.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from discmed.errors import DiscmedError

# Reasons an annotator may give for marking a candidate unacceptable; the page shows the labels.
REASONS: dict[str, str] = {
    "factual": "事实错误",
    "unsafe": "不安全",
    "unhelpful": "没有帮助",
    "tone": "语气不当",
}

DEFAULT_LEASE_S = 30 * 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL,
  messages TEXT NOT NULL,          -- JSON list of {"role","content"}, ending with a user turn
  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS candidates(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  item_id TEXT NOT NULL REFERENCES items(id),
  text TEXT NOT NULL,
  model TEXT NOT NULL,             -- provenance: the model spec (or "reference", "human", …)
  params TEXT NOT NULL,            -- provenance: JSON of the generation parameters
  sample INTEGER NOT NULL,         -- the n-th sample of this model for this item (resume key)
  created REAL NOT NULL,           -- provenance: unix time of generation
  dup_of INTEGER,                  -- same text as an earlier candidate of the item: not shown
  UNIQUE(item_id, model, sample));
CREATE TABLE IF NOT EXISTS annotators(
  name TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL,        -- sha256 of the token; the token itself is never stored
  created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS slots(
  item_id TEXT NOT NULL REFERENCES items(id),
  slot INTEGER NOT NULL,
  seq INTEGER NOT NULL,            -- the item's load order: work is handed out in this order
  assigned_to TEXT,
  lease_until REAL,
  done INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(item_id, slot));
CREATE INDEX IF NOT EXISTS slots_holder ON slots(assigned_to, done);
-- claim walks open slots in hand-out order and stops at the first free one
CREATE INDEX IF NOT EXISTS slots_open ON slots(done, seq, slot);
CREATE TABLE IF NOT EXISTS decisions(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  item_id TEXT NOT NULL REFERENCES items(id),
  annotator TEXT NOT NULL,
  best INTEGER,                    -- candidate id picked as best, or NULL
  edited TEXT,                     -- the ideal reply written by the annotator, or NULL
  edited_from INTEGER,             -- candidate id the edit started from, or NULL
  rejected TEXT NOT NULL,          -- JSON {candidate id: reason}
  created REAL NOT NULL,
  undone REAL);                    -- set by undo; undone decisions are kept, never exported
CREATE INDEX IF NOT EXISTS decisions_by ON decisions(annotator, undone);
"""


class CurationError(DiscmedError, ValueError):
    """A request the store refuses; `status` is the HTTP status the web app answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Candidate:
    id: int
    item_id: str
    text: str
    model: str
    params: dict
    sample: int
    created: float


@dataclass
class Item:
    id: str
    source: str
    messages: list[dict]
    candidates: list[Candidate] = field(default_factory=list)


@dataclass
class Decision:
    id: int
    item_id: str
    annotator: str
    best: int | None
    edited: str | None
    edited_from: int | None
    rejected: dict[int, str]
    created: float


def hash_token(token: str) -> str:
    # Tokens are 192 random bits, so a plain sha256 is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def _overlap_rank(item_id: str) -> str:
    # A stable pseudo-random order, so the items picked for overlap do not depend on load order.
    return hashlib.sha1(item_id.encode()).hexdigest()


class Store:
    """One curation database. Opens a fresh SQLite connection per operation, so one Store can be
    shared by the web server's worker threads."""

    def __init__(self, path: str | Path, lease_s: float = DEFAULT_LEASE_S):
        self.path = Path(path)
        self.lease_s = lease_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        try:
            db.executescript(SCHEMA)  # IF NOT EXISTS throughout: opening twice is harmless
        finally:
            db.close()

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a decision the server acknowledged survives a crash of the machine, not only of
        # the process; annotation writes are a few per minute, so the fsync costs nothing.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken with BEGIN IMMEDIATE: the write lock is held from the first
        read, so read-then-write sequences (claim, submit, undo) cannot interleave."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    # -- loading -------------------------------------------------------------------------------

    def add_item(self, item_id: str, messages: list[dict], source: str = "curate") -> bool:
        """Add a consultation (messages ending with the user's turn). Returns False when an item
        with this id is already there (its messages are left as they were)."""
        with self._tx() as db:
            added = self._add_item(db, item_id, messages, source)
            if added:
                self._apply_overlap(db)
            return added

    def add_candidate(
        self,
        item_id: str,
        text: str,
        model: str,
        params: dict | None = None,
        sample: int | None = None,
        created: float | None = None,
    ) -> int | None:
        """Store one candidate reply with its provenance. `sample` is the resume key with
        `model`: adding the same (item, model, sample) twice keeps the first and returns None.
        Without `sample`, the next free number for this model is used."""
        with self._tx() as db:
            return self._add_candidate(db, item_id, text, model, params, sample, created)

    def add_many(self, records: list[dict]) -> tuple[int, int]:
        """Add items with their candidates in one transaction (fast for thousands of rows).
        A record: {"id", "source", "messages", "candidates": [{"text", "model", "params",
        "sample", "created"}]}; without "messages" it adds candidates to an existing item.
        Returns (items added, candidates added)."""
        items = cands = 0
        with self._tx() as db:
            for r in records:
                if "messages" in r:  # records without messages add candidates to existing items
                    items += self._add_item(db, r["id"], r["messages"], r.get("source", "curate"))
                for c in r.get("candidates", []):
                    cid = self._add_candidate(
                        db, r["id"], c["text"], c["model"], c.get("params"), c.get("sample"), c.get("created")
                    )
                    cands += cid is not None
            if items:
                self._apply_overlap(db)
        return items, cands

    def _add_item(self, db: sqlite3.Connection, item_id: str, messages: list[dict], source: str) -> bool:
        if not messages or messages[-1].get("role") != "user":
            raise CurationError(f"item {item_id}: messages must end with a user turn")
        cur = db.execute(
            "INSERT OR IGNORE INTO items(id, source, messages, created) VALUES (?,?,?,?)",
            (item_id, source, json.dumps(messages, ensure_ascii=False), time.time()),
        )
        if cur.rowcount:
            db.execute(
                "INSERT INTO slots(item_id, slot, seq) VALUES (?, 0, (SELECT seq FROM items WHERE id=?))",
                (item_id, item_id),
            )
        return bool(cur.rowcount)

    def _add_candidate(
        self,
        db: sqlite3.Connection,
        item_id: str,
        text: str,
        model: str,
        params: dict | None,
        sample: int | None,
        created: float | None,
    ) -> int | None:
        if not text.strip():
            raise CurationError(f"item {item_id}: empty candidate from {model}")
        if db.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is None:
            raise CurationError(f"no item {item_id!r}; add the item first", 404)
        if sample is None:
            sample = db.execute(
                "SELECT COALESCE(MAX(sample)+1, 0) FROM candidates WHERE item_id=? AND model=?",
                (item_id, model),
            ).fetchone()[0]
        dup = db.execute(
            "SELECT id FROM candidates WHERE item_id=? AND text=? AND dup_of IS NULL", (item_id, text)
        ).fetchone()
        cur = db.execute(
            "INSERT OR IGNORE INTO candidates(item_id, text, model, params, sample, created, dup_of)"
            " VALUES (?,?,?,?,?,?,?)",
            (
                item_id,
                text,
                model,
                json.dumps(params or {}, ensure_ascii=False, sort_keys=True),
                sample,
                created if created is not None else time.time(),
                dup[0] if dup else None,
            ),
        )
        return cur.lastrowid if cur.rowcount else None

    def has_candidate(self, item_id: str, model: str, sample: int) -> bool:
        with self._read() as db:
            row = db.execute(
                "SELECT 1 FROM candidates WHERE item_id=? AND model=? AND sample=?", (item_id, model, sample)
            ).fetchone()
            return row is not None

    # -- overlap -------------------------------------------------------------------------------

    def set_overlap(self, fraction: float) -> int:
        """Have `fraction` of the items annotated by two people (for Cohen's κ). Returns the
        number of items that now have two slots. Slots already claimed are never taken away."""
        if not 0.0 <= fraction <= 1.0:
            raise CurationError(f"overlap must be between 0 and 1, got {fraction}")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('overlap', ?)", (str(fraction),))
            self._apply_overlap(db)
            return db.execute("SELECT COUNT(*) FROM slots WHERE slot=1").fetchone()[0]

    def overlap(self) -> float:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key='overlap'").fetchone()
            return float(row[0]) if row else 0.0

    def _apply_overlap(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key='overlap'").fetchone()
        fraction = float(row[0]) if row else 0.0
        if fraction == 0.0 and db.execute("SELECT 1 FROM slots WHERE slot=1 LIMIT 1").fetchone() is None:
            return  # nothing to add or take away; skips the sort on every load without overlap
        ids = sorted((r[0] for r in db.execute("SELECT id FROM items")), key=_overlap_rank)
        chosen = set(ids[: round(fraction * len(ids))])
        for item_id in ids:
            if item_id in chosen:
                db.execute(
                    "INSERT OR IGNORE INTO slots(item_id, slot, seq) VALUES (?, 1, (SELECT seq FROM items WHERE id=?))",
                    (item_id, item_id),
                )
            else:
                db.execute(
                    "DELETE FROM slots WHERE item_id=? AND slot=1 AND assigned_to IS NULL AND done=0",
                    (item_id,),
                )

    # -- annotators ----------------------------------------------------------------------------

    def issue_token(self, name: str) -> str:
        """Create the annotator `name` (or replace their token) and return the new token. Only
        its hash is stored: show the token to the annotator now, it cannot be read back."""
        name = name.strip()
        if not name or len(name) > 64:
            raise CurationError("annotator name must be 1–64 characters")
        token = secrets.token_urlsafe(24)
        with self._tx() as db:
            db.execute(
                "INSERT INTO annotators(name, token_hash, created) VALUES (?,?,?)"
                " ON CONFLICT(name) DO UPDATE SET token_hash=excluded.token_hash",
                (name, hash_token(token), time.time()),
            )
        return token

    def check_token(self, name: str, token: str) -> bool:
        """True when `token` is the current token of `name`. Compares in constant time, and
        also compares when the name is unknown, so timing tells nothing about which names exist."""
        with self._read() as db:
            row = db.execute("SELECT token_hash FROM annotators WHERE name=?", (name,)).fetchone()
        stored = row[0] if row else "0" * 64
        ok = hmac.compare_digest(stored, hash_token(token))
        return ok and row is not None

    def annotators(self) -> list[str]:
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT name FROM annotators ORDER BY name")]

    # -- annotation ----------------------------------------------------------------------------

    def claim(self, annotator: str) -> Item | None:
        """The item `annotator` should work on now: the one they hold, or a newly claimed one.
        None when nothing is left for them."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT item_id FROM slots WHERE assigned_to=? AND done=0 ORDER BY lease_until DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is not None:
                db.execute(
                    "UPDATE slots SET lease_until=? WHERE item_id=? AND assigned_to=?",
                    (now + self.lease_s, row[0], annotator),
                )
                item_id = row[0]
            else:
                # One statement, under the write lock: the slot picked is the slot taken.
                row = db.execute(
                    """UPDATE slots SET assigned_to=:me, lease_until=:until
                       WHERE rowid = (
                         SELECT s.rowid FROM slots s
                         WHERE s.done = 0
                           AND (s.assigned_to IS NULL OR s.lease_until < :now)
                           AND NOT EXISTS (SELECT 1 FROM slots t
                                           WHERE t.item_id = s.item_id AND t.assigned_to = :me)
                           AND EXISTS (SELECT 1 FROM candidates c
                                       WHERE c.item_id = s.item_id AND c.dup_of IS NULL)
                         ORDER BY s.seq, s.slot LIMIT 1)
                       RETURNING item_id""",
                    {"me": annotator, "until": now + self.lease_s, "now": now},
                ).fetchone()
                if row is None:
                    return None
                item_id = row[0]
            return self._item(db, item_id)

    def item(self, item_id: str) -> Item:
        with self._read() as db:
            return self._item(db, item_id)

    def items(self) -> list[Item]:
        """Every item with its shown candidates, in load order (two queries, for export)."""
        with self._read() as db:
            items = {
                r["id"]: Item(r["id"], r["source"], json.loads(r["messages"]))
                for r in db.execute("SELECT id, source, messages FROM items ORDER BY seq")
            }
            for r in db.execute("SELECT * FROM candidates WHERE dup_of IS NULL ORDER BY id"):
                items[r["item_id"]].candidates.append(_candidate(r))
            return list(items.values())

    def _item(self, db: sqlite3.Connection, item_id: str) -> Item:
        row = db.execute("SELECT id, source, messages FROM items WHERE id=?", (item_id,)).fetchone()
        if row is None:
            raise CurationError(f"no item {item_id!r}", 404)
        cands = [
            _candidate(r)
            for r in db.execute(
                "SELECT * FROM candidates WHERE item_id=? AND dup_of IS NULL ORDER BY id", (item_id,)
            )
        ]
        return Item(row["id"], row["source"], json.loads(row["messages"]), cands)

    def submit(
        self,
        annotator: str,
        item_id: str,
        best: int | None = None,
        rejected: dict[int, str] | None = None,
        edited: str | None = None,
        edited_from: int | None = None,
    ) -> int:
        """Record `annotator`'s decision on the item they hold and mark its slot done, in one
        transaction. Returns the decision id."""
        rejected = {int(k): v for k, v in (rejected or {}).items()}
        edited = edited.strip() if edited and edited.strip() else None
        with self._tx() as db:
            slot = db.execute(
                "SELECT done FROM slots WHERE item_id=? AND assigned_to=?", (item_id, annotator)
            ).fetchone()
            if slot is None:
                raise CurationError(
                    f"条目 {item_id} 没有分配给 {annotator}（可能租约已过期，已交给他人）", 409
                )
            if slot[0]:
                raise CurationError(f"条目 {item_id} 已经提交过了", 409)
            texts = {
                r[0]: r[1]
                for r in db.execute(
                    "SELECT id, text FROM candidates WHERE item_id=? AND dup_of IS NULL", (item_id,)
                )
            }
            for cid in [best, edited_from, *rejected]:
                if cid is not None and cid not in texts:
                    raise CurationError(f"候选回复 {cid} 不属于条目 {item_id}")
            for reason in rejected.values():
                if reason not in REASONS:
                    raise CurationError(f"未知的理由 {reason!r}（可选：{', '.join(REASONS)}）")
            if best is not None and best in rejected:
                raise CurationError("同一条回复不能既是最佳又被标为不可接受")
            # An "edit" that changed nothing is a pick of the reply it started from.
            if edited is not None and edited_from is not None and edited == texts[edited_from].strip():
                edited = None
                if best is None and edited_from not in rejected:
                    best = edited_from
            if best is None and edited is None and len(rejected) < len(texts):
                raise CurationError("请选出最佳回复、写出理想回复，或把所有回复都标为不可接受")
            cur = db.execute(
                "INSERT INTO decisions(item_id, annotator, best, edited, edited_from, rejected, created)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    item_id,
                    annotator,
                    best,
                    edited,
                    edited_from if edited is not None else None,
                    json.dumps({str(k): v for k, v in sorted(rejected.items())}),
                    time.time(),
                ),
            )
            db.execute(
                "UPDATE slots SET done=1, lease_until=NULL WHERE item_id=? AND assigned_to=?",
                (item_id, annotator),
            )
            return cur.lastrowid

    def undo(self, annotator: str) -> Decision:
        """Take back `annotator`'s last decision: it is stamped undone (kept, never exported) and
        its item becomes their current item again; an item they had claimed meanwhile goes back
        to the pool. Returns the decision taken back, so the page can show it again."""
        now = time.time()
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM decisions WHERE annotator=? AND undone IS NULL ORDER BY id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is None:
                raise CurationError("没有可以撤销的决定", 409)
            db.execute("UPDATE decisions SET undone=? WHERE id=?", (now, row["id"]))
            db.execute(
                "UPDATE slots SET assigned_to=NULL, lease_until=NULL WHERE assigned_to=? AND done=0",
                (annotator,),
            )
            db.execute(
                "UPDATE slots SET done=0, lease_until=? WHERE item_id=? AND assigned_to=?",
                (now + self.lease_s, row["item_id"], annotator),
            )
            return _decision(row)

    def release(self, annotator: str) -> None:
        """Give back the item `annotator` holds without deciding (sign-out)."""
        with self._tx() as db:
            db.execute(
                "UPDATE slots SET assigned_to=NULL, lease_until=NULL WHERE assigned_to=? AND done=0",
                (annotator,),
            )

    # -- reading back --------------------------------------------------------------------------

    def decisions(self) -> list[Decision]:
        """Every decision in force (not undone), oldest first."""
        with self._read() as db:
            return [
                _decision(r) for r in db.execute("SELECT * FROM decisions WHERE undone IS NULL ORDER BY id")
            ]

    def progress(self) -> dict:
        """Counts for the whole set and per annotator."""
        now = time.time()
        with self._read() as db:
            one = lambda sql, *a: db.execute(sql, a).fetchone()[0]  # noqa: E731
            out = {
                "items": one("SELECT COUNT(*) FROM items"),
                "candidates": one("SELECT COUNT(*) FROM candidates WHERE dup_of IS NULL"),
                "duplicates": one("SELECT COUNT(*) FROM candidates WHERE dup_of IS NOT NULL"),
                "slots": one("SELECT COUNT(*) FROM slots"),
                "slots_done": one("SELECT COUNT(*) FROM slots WHERE done=1"),
                "items_done": one(
                    "SELECT COUNT(*) FROM (SELECT item_id FROM slots GROUP BY item_id HAVING MIN(done) = 1)"
                ),
                "overlap_items": one("SELECT COUNT(*) FROM slots WHERE slot=1"),
                "annotators": {},
            }
            for (name,) in db.execute("SELECT name FROM annotators ORDER BY name").fetchall():
                out["annotators"][name] = {
                    "done": one("SELECT COUNT(*) FROM decisions WHERE annotator=? AND undone IS NULL", name),
                    "edited": one(
                        "SELECT COUNT(*) FROM decisions WHERE annotator=? AND undone IS NULL AND edited IS NOT NULL",
                        name,
                    ),
                    "undone": one(
                        "SELECT COUNT(*) FROM decisions WHERE annotator=? AND undone IS NOT NULL", name
                    ),
                    "holding": one(
                        "SELECT COUNT(*) FROM slots WHERE assigned_to=? AND done=0 AND lease_until>=?",
                        name,
                        now,
                    ),
                    "last": one("SELECT MAX(created) FROM decisions WHERE annotator=?", name),
                }
            return out


def _candidate(r: sqlite3.Row) -> Candidate:
    return Candidate(
        r["id"], r["item_id"], r["text"], r["model"], json.loads(r["params"]), r["sample"], r["created"]
    )


def _decision(r: sqlite3.Row) -> Decision:
    return Decision(
        id=r["id"],
        item_id=r["item_id"],
        annotator=r["annotator"],
        best=r["best"],
        edited=r["edited"],
        edited_from=r["edited_from"],
        rejected={int(k): v for k, v in json.loads(r["rejected"]).items()},
        created=r["created"],
    )
