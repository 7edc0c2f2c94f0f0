// The annotators' page: sign in, show one consultation with its candidate replies, collect a
// decision (best / unacceptable with a reason / an edited ideal reply), submit, undo.
// Plain JavaScript, no build step; the server keeps all state, the page only the current draft.
"use strict";

const REASONS = [
  ["factual", "事实错误"],
  ["unsafe", "不安全"],
  ["unhelpful", "没有帮助"],
  ["tone", "语气不当"],
];
const ROLE = { user: "患者", assistant: "医生", system: "系统" };

let auth = JSON.parse(sessionStorage.getItem("curate-auth") || "null");
let item = null; // {id, messages, candidates: [{id, label, text}]}
let draft = null; // {best, rejected: {id: reason}, edited, edited_from}
let focus = 0;
let busy = false;

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (auth) {
    headers["Authorization"] = "Bearer " + auth.token;
    headers["X-Annotator"] = encodeURIComponent(auth.name);
  }
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && auth) {
    signOut("登录已失效，请重新登录");
  }
  if (!r.ok) {
    const err = new Error(typeof data.detail === "string" ? data.detail : "请求失败（" + r.status + "）");
    err.status = r.status;
    throw err;
  }
  return data;
}

function setStatus(text, isError) {
  const s = $("status");
  s.textContent = text || "";
  s.className = isError ? "error" : "";
}

function showProgress(p) {
  if (!p) return;
  $("progress-box").hidden = false;
  $("progress").textContent = `你已完成 ${p.mine} 条 · 全部 ${p.slots_done} / ${p.slots}`;
  $("progress-fill").style.width = (p.slots ? (100 * p.slots_done) / p.slots : 0) + "%";
}

function signOut(message) {
  auth = null;
  sessionStorage.removeItem("curate-auth");
  item = null;
  $("work").hidden = true;
  $("done").hidden = true;
  $("who").hidden = true;
  $("progress-box").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

async function signIn(name, token) {
  try {
    await api("POST", "/api/login", { name, token });
  } catch (e) {
    $("login-error").textContent = e.message;
    return;
  }
  auth = { name, token };
  sessionStorage.setItem("curate-auth", JSON.stringify(auth));
  await enter().catch((e) => signOut(e.message));
}

async function enter() {
  $("login").hidden = true;
  $("who").hidden = false;
  $("who-name").textContent = "标注员：" + auth.name;
  await loadNext();
}

async function loadNext() {
  const data = await api("GET", "/api/next");
  showProgress(data.progress);
  show(data.item, null);
}

function show(newItem, decision) {
  item = newItem;
  focus = 0;
  if (!item) {
    $("work").hidden = true;
    $("done").hidden = false;
    return;
  }
  $("done").hidden = true;
  $("work").hidden = false;
  draft = decision
    ? {
        best: decision.best,
        rejected: Object.fromEntries(Object.entries(decision.rejected).map(([k, v]) => [Number(k), v])),
        edited: decision.edited,
        edited_from: decision.edited_from,
      }
    : { best: null, rejected: {}, edited: null, edited_from: null };
  $("item-id").textContent = item.id;
  const box = $("messages");
  box.replaceChildren();
  for (const m of item.messages) {
    const div = document.createElement("div");
    div.className = "msg " + m.role;
    const who = document.createElement("span");
    who.className = "role";
    who.textContent = ROLE[m.role] || m.role;
    const text = document.createElement("p");
    text.textContent = m.content;
    div.append(who, text);
    box.append(div);
  }
  const cands = $("candidates");
  cands.replaceChildren();
  cands.style.gridTemplateColumns = `repeat(${Math.min(item.candidates.length, 4)}, minmax(0, 1fr))`;
  item.candidates.forEach((c, i) => {
    const card = document.createElement("article");
    card.className = "cand";
    card.dataset.cid = c.id;
    card.dataset.label = c.label;
    card.addEventListener("click", () => setFocus(i));
    const head = document.createElement("h3");
    head.textContent = "回复 " + c.label;
    const text = document.createElement("p");
    text.className = "text";
    text.textContent = c.text;
    const best = button("选为最佳", "best-btn", () => toggleBest(c.id), "B");
    const reasons = document.createElement("div");
    reasons.className = "reasons";
    REASONS.forEach(([code, label], k) => {
      const b = button(label, "reason-btn", () => toggleReason(c.id, code), String(k + 1));
      b.dataset.reason = code;
      reasons.append(b);
    });
    const edit = button("编辑", "edit-btn", () => startEdit(c.id), "E");
    const tools = document.createElement("div");
    tools.className = "tools";
    tools.append(best, edit);
    card.append(head, text, tools, reasons);
    cands.append(card);
  });
  if (draft.edited !== null) {
    $("editor").value = draft.edited;
  }
  setStatus("");
  render();
}

function button(label, cls, onClick, key) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  if (key) {
    const k = document.createElement("kbd");
    k.textContent = key;
    b.append(" ", k);
  }
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    onClick();
  });
  return b;
}

function render() {
  const cards = document.querySelectorAll(".cand");
  cards.forEach((card, i) => {
    const id = Number(card.dataset.cid);
    const reason = draft.rejected[id];
    card.classList.toggle("focus", i === focus);
    card.classList.toggle("best", draft.best === id);
    card.classList.toggle("rejected", Boolean(reason));
    card.classList.toggle("editing", draft.edited !== null && draft.edited_from === id);
    card.querySelector(".best-btn").setAttribute("aria-pressed", draft.best === id);
    card.querySelectorAll(".reason-btn").forEach((b) => {
      b.setAttribute("aria-pressed", b.dataset.reason === reason);
    });
  });
  const editing = draft.edited !== null;
  $("editor-box").hidden = !editing;
  if (editing) {
    const from = item.candidates.find((c) => c.id === draft.edited_from);
    $("editor-from").textContent = from ? "（基于回复 " + from.label + "）" : "";
  }
}

function setFocus(i) {
  focus = Math.max(0, Math.min(item.candidates.length - 1, i));
  render();
}

function toggleBest(id) {
  draft.best = draft.best === id ? null : id;
  if (draft.best !== null) delete draft.rejected[id];
  render();
}

function toggleReason(id, code) {
  if (draft.rejected[id] === code) delete draft.rejected[id];
  else {
    draft.rejected[id] = code;
    if (draft.best === id) draft.best = null;
  }
  render();
}

function startEdit(id) {
  const c = item.candidates.find((x) => x.id === id);
  draft.edited_from = id;
  draft.edited = c.text;
  $("editor").value = c.text;
  render();
  $("editor").focus();
}

function cancelEdit() {
  draft.edited = null;
  draft.edited_from = null;
  $("editor").value = "";
  $("editor").blur();
  render();
}

async function submit() {
  if (!item || busy) return;
  busy = true;
  const edited = draft.edited !== null ? $("editor").value : null;
  try {
    const data = await api("POST", "/api/decision", {
      item_id: item.id,
      best: draft.best,
      rejected: draft.rejected,
      edited,
      edited_from: edited !== null ? draft.edited_from : null,
    });
    showProgress(data.progress);
    await loadNext();
    setStatus("已提交");
  } catch (e) {
    // 409: the item is no longer ours (lease ran out) or was already submitted: move on.
    if (e.status === 409) await loadNext().catch(() => {});
    setStatus(e.message, true);
  } finally {
    busy = false;
  }
}

async function undo() {
  if (busy) return;
  busy = true;
  try {
    const data = await api("POST", "/api/undo");
    showProgress(data.progress);
    show(data.item, data.decision);
    setStatus("已撤销上一条决定，可以重新标注");
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (e) => {
  if (!auth) return;
  const typing = ["INPUT", "TEXTAREA"].includes(document.activeElement.tagName);
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    submit();
    return;
  }
  if (typing) {
    if (e.key === "Escape") cancelEdit();
    return;
  }
  if (e.key === "u" || e.key === "U") {
    e.preventDefault();
    undo();
    return;
  }
  if (!item || $("work").hidden) return;
  const c = item.candidates[focus];
  if (e.key === "ArrowRight" || e.key === "l") setFocus(focus + 1);
  else if (e.key === "ArrowLeft" || e.key === "h") setFocus(focus - 1);
  else if (e.key === "b" || e.key === "B") toggleBest(c.id);
  else if (e.key === "e" || e.key === "E") {
    e.preventDefault();
    startEdit(c.id);
  } else if (["1", "2", "3", "4"].includes(e.key)) toggleReason(c.id, REASONS[Number(e.key) - 1][0]);
  else return;
  e.preventDefault();
});

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  signIn($("login-name").value.trim(), $("login-token").value.trim());
});
$("submit").addEventListener("click", submit);
$("undo").addEventListener("click", undo);
$("editor-cancel").addEventListener("click", cancelEdit);
$("logout").addEventListener("click", async () => {
  await api("POST", "/api/release").catch(() => {});
  signOut("");
});

if (auth) enter().catch((e) => signOut(e.message));
