"""The annotators' web tool: a FastAPI app over a curation `Store`, serving one page
(static/index.html, plain HTML and JavaScript) and a small JSON API.

Every API call carries the annotator's name and token (`X-Annotator`, URL-encoded because names
are Chinese and HTTP headers are Latin-1; `Authorization: Bearer <token>`); the server checks them
against the stored hash on each request and keeps no sessions, so a restarted server lets
everyone carry on where they were. Candidates are shown blind (no model names) and in an order
shuffled per annotator and item, so neither the source nor the position sways the pick.

    POST /api/login      {name, token} -> {name} | 401
    GET  /api/next       -> {item: {id, messages, candidates: [{id, label, text}]} | null, progress}
    POST /api/decision   {item_id, best, rejected: {id: reason}, edited, edited_from} -> {decision_id, progress}
    POST /api/undo       -> {decision, item, progress}
    POST /api/release    -> give back the held item (sign-out)
    GET  /api/progress   -> the whole set's counts and the caller's own (never other annotators':
                            `discmed data curate progress` shows those to whoever holds the database)

Before any route reads a body, a guard refuses a body over `MAX_BODY` (413) and, on the API
routes that need a sign-in, a request without the annotator's headers (401): a stranger cannot
make the server read 100 MB to learn that the token is wrong.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from urllib.parse import unquote

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from discmed import SAFETY_NOTICE_ZH
from discmed.data.curate.store import REASONS, CurationError, Item, Store

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1 << 20  # a decision with an edited reply is a few kB
OPEN = ("/api/login", "/api/info")  # API routes that answer without the annotator's headers


class Guard:
    """Pure ASGI, before FastAPI reads a body: the size limit (declared or counted as it
    arrives) and, for signed-in routes, the presence and validity of name and token."""

    def __init__(self, app, store: Store):
        self.app, self.store = app, store

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        length = headers.get("content-length", "")
        if length and (not length.isdigit() or int(length) > MAX_BODY):
            return await JSONResponse({"detail": f"请求过大（上限 {MAX_BODY} 字节）"}, status_code=413)(scope, receive, send)
        path = scope["path"]
        if path.startswith("/api/") and path not in OPEN:
            name = unquote(headers.get("x-annotator", ""))
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not name or not token or not self.store.check_token(name, token):
                return await JSONResponse({"detail": "姓名或令牌不正确"}, status_code=401,
                                          headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY:
                    raise HTTPException(413, f"请求过大（上限 {MAX_BODY} 字节）")
            return message

        await self.app(scope, limited, send)


class Login(BaseModel):
    name: str
    token: str


class DecisionIn(BaseModel):
    item_id: str
    best: int | None = None
    rejected: dict[int, str] = Field(default_factory=dict)
    edited: str | None = None
    edited_from: int | None = None


def _shown(item: Item, annotator: str) -> dict:
    """The item as the page shows it: candidates without provenance, in a per-annotator order."""
    cands = list(item.candidates)
    seed = int(hashlib.sha1(f"{item.id}\0{annotator}".encode()).hexdigest()[:8], 16)
    random.Random(seed).shuffle(cands)
    return {
        "id": item.id,
        "messages": item.messages,
        "candidates": [{"id": c.id, "label": chr(ord("A") + i), "text": c.text} for i, c in enumerate(cands)],
    }


def create_app(db: str | Path, lease_s: float | None = None) -> FastAPI:
    store = Store(db) if lease_s is None else Store(db, lease_s=lease_s)
    app = FastAPI(title="discmed curation", docs_url=None, redoc_url=None)
    app.state.store = store
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace("{{SAFETY_NOTICE}}", SAFETY_NOTICE_ZH)

    @app.exception_handler(CurationError)
    def _curation_error(request: Request, exc: CurationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    def annotator(x_annotator: str = Header(""), authorization: str = Header("")) -> str:
        name = unquote(x_annotator)
        token = authorization.removeprefix("Bearer ").strip()
        if not name or not token or not store.check_token(name, token):
            raise HTTPException(401, "姓名或令牌不正确", headers={"WWW-Authenticate": "Bearer"})
        return name

    def progress_for(name: str) -> dict:
        p = store.progress()
        return {
            "mine": p["annotators"].get(name, {}).get("done", 0),
            "slots": p["slots"],
            "slots_done": p["slots_done"],
            "items": p["items"],
            "items_done": p["items_done"],
        }

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict:
        return {"safety_notice": SAFETY_NOTICE_ZH, "reasons": REASONS}

    @app.post("/api/login")
    def login(body: Login) -> dict:
        if not store.check_token(body.name.strip(), body.token.strip()):
            raise HTTPException(401, "姓名或令牌不正确")
        return {"name": body.name.strip()}

    @app.get("/api/next")
    def next_item(name: str = Depends(annotator)) -> dict:
        item = store.claim(name)
        return {"item": _shown(item, name) if item else None, "progress": progress_for(name)}

    @app.post("/api/decision")
    def decide(body: DecisionIn, name: str = Depends(annotator)) -> dict:
        did = store.submit(name, body.item_id, body.best, body.rejected, body.edited, body.edited_from)
        return {"decision_id": did, "progress": progress_for(name)}

    @app.post("/api/undo")
    def undo(name: str = Depends(annotator)) -> dict:
        d = store.undo(name)
        return {
            "decision": {
                "item_id": d.item_id,
                "best": d.best,
                "rejected": d.rejected,
                "edited": d.edited,
                "edited_from": d.edited_from,
            },
            "item": _shown(store.item(d.item_id), name),
            "progress": progress_for(name),
        }

    @app.post("/api/release")
    def release(name: str = Depends(annotator)) -> dict:
        store.release(name)
        return {"released": True}

    @app.get("/api/progress")
    def progress(name: str = Depends(annotator)) -> dict:
        return progress_for(name)  # the set's counts and the caller's own; no one else's names

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, store=store)
    return app


def serve(db: str | Path, host: str = "127.0.0.1", port: int = 8765, lease_s: float | None = None) -> None:
    """Run the tool with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(db, lease_s), host=host, port=port, log_level="warning")
