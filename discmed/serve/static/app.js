// discmed chat page: keeps the conversation in the browser and streams replies from the
// server's own OpenAI-compatible API (POST /v1/chat/completions, stream: true).
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("ask");
const input = document.getElementById("input");
const sendBtn = document.getElementById("send");
const keyInput = document.getElementById("key");
const maxTokens = document.getElementById("max-tokens");
let history = [];       // OpenAI messages: what the model sees next turn
let model = null;
let controller = null;  // aborts the running reply on "clear"

keyInput.value = localStorage.getItem("discmed-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("discmed-key", keyInput.value));

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}

async function loadModel() {
  const r = await fetch("/v1/models", { headers: headers() });
  if (!r.ok) throw new Error(await errorText(r));
  model = (await r.json()).data[0].id;
  document.getElementById("model").textContent = model;
}

async function errorText(r) {
  try { return (await r.json()).error.message; } catch (e) { return "HTTP " + r.status; }
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text || "";
  log.appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

// Read server-sent events from a fetch body: yields each parsed "data:" JSON object.
async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

async function ask(text) {
  if (!model) await loadModel();
  history.push({ role: "user", content: text });
  bubble("user", text);
  const div = bubble("assistant", "");
  div.dataset.state = "streaming";
  const body = document.createElement("span");
  body.className = "reply";
  div.appendChild(body);
  controller = new AbortController();
  let reply = "";
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: controller.signal,
      body: JSON.stringify({ model, messages: history, stream: true, max_tokens: Number(maxTokens.value) || 256 }),
    });
    if (!r.ok) throw new Error(await errorText(r));
    for await (const chunk of events(r.body)) {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.safety && chunk.safety.urgent) {
        // The server put the urgent instruction at the start of the reply; show it as a banner.
        div.insertBefore(Object.assign(document.createElement("span"), { className: "urgent" }), body);
      }
      const piece = chunk.choices && chunk.choices[0] && chunk.choices[0].delta.content;
      if (piece) {
        reply += piece;
        render(div, body, reply);
      }
    }
    history.push({ role: "assistant", content: reply });
    div.appendChild(Object.assign(document.createElement("span"), {
      className: "note", textContent: "AI 生成，仅供参考，不能替代医生诊治。" }));
    div.dataset.state = "done";
  } catch (e) {
    if (e.name === "AbortError") return;
    history.pop();  // the question goes unanswered: let the user ask again
    div.className = "msg error";
    div.textContent = "出错了：" + e.message;
    div.dataset.state = "error";
  } finally {
    controller = null;
  }
}

// The urgent instruction arrives as the first paragraph of the reply; keep it in its banner.
function render(div, body, reply) {
  const banner = div.querySelector(".urgent");
  if (banner && reply.indexOf("\n\n") >= 0) {
    const cut = reply.indexOf("\n\n");
    banner.textContent = reply.slice(0, cut);
    body.textContent = reply.slice(cut + 2);
  } else if (banner) {
    banner.textContent = reply;
  } else {
    body.textContent = reply;
  }
  div.scrollIntoView({ block: "end" });
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text || controller) return;
  input.value = "";
  sendBtn.disabled = true;
  try { await ask(text); } catch (e) { bubble("error", "出错了：" + e.message); }
  finally { sendBtn.disabled = false; input.focus(); }
});

input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    form.requestSubmit();
  }
});

document.getElementById("clear").addEventListener("click", () => {
  if (controller) controller.abort();
  history = [];
  log.replaceChildren();
  input.focus();
});

loadModel().catch((e) => { document.getElementById("model").textContent = "（" + e.message + "）"; });
