// The chat page: one websocket per agent, run events rendered as they arrive.
// Every URL comes from data attributes rendered by the server (the apps may be mounted anywhere).
// Resuming: each run remembers the last event_index shown; after a reconnect the page asks for what
// came after it, and after a reload it reopens the session and replays a running answer from the start.
(() => {
  "use strict";

  const root = document.getElementById("chat");
  if (!root) return;
  const cfg = root.dataset;
  const $ = (id) => document.getElementById(id);
  const els = {
    agent: $("agent"), conn: $("conn"), sessions: $("sessions"), list: $("session-list"),
    toggle: $("toggle-sessions"), newSession: $("new-session"), messages: $("messages"),
    notice: $("notice"), form: $("composer"), input: $("message"), send: $("send"), stop: $("stop"),
  };
  const state = {
    agent: els.agent ? els.agent.value : "",
    sessionId: null,
    ws: null,
    outbox: [],
    retry: 0,
    runs: new Map(), // run_id -> {bubble, text, tools: Map, last, done}
    pending: [], // bubbles of "run" frames sent, waiting for their RunStarted: {id, bubble}
    nextId: 1,
    connectedOnce: false,
  };

  // ---- rendering ------------------------------------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scrollDown() {
    els.messages.scrollTop = els.messages.scrollHeight;
  }

  function userBubble(text) {
    const bubble = el("div", "msg user");
    bubble.append(el("div", "text", text));
    els.messages.append(bubble);
    scrollDown();
    return bubble;
  }

  function assistantBubble() {
    const bubble = el("div", "msg assistant streaming");
    bubble.append(el("div", "tools"), el("div", "text"));
    els.messages.append(bubble);
    scrollDown();
    return bubble;
  }

  function brief(value, limit = 160) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text && text.length > limit ? text.slice(0, limit) + "…" : text || "";
  }

  function toolChip(run, tool) {
    let chip = run.tools.get(tool.tool_call_id);
    if (!chip) {
      chip = el("div", "tool running");
      chip.append(el("span", "tool-name", `${tool.tool_name}(${brief(tool.tool_args || {}, 80)})`), el("span", "tool-result"));
      run.tools.set(tool.tool_call_id, chip);
      run.bubble.querySelector(".tools").append(chip);
    }
    return chip;
  }

  function status(run, cls, text) {
    run.bubble.classList.remove("streaming");
    if (cls) run.bubble.classList.add(cls);
    if (text) run.bubble.append(el("div", "status", text));
  }

  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = !text;
  }

  function refreshButtons() {
    const active = [...state.runs.values()].some((r) => !r.done) || state.pending.length > 0;
    els.stop.hidden = !active;
  }

  // ---- run events ---------------------------------------------------------------------------------

  function runFor(event) {
    let run = state.runs.get(event.run_id);
    if (!run) {
      const waiting = state.pending.shift();
      run = { bubble: waiting ? waiting.bubble : assistantBubble(), text: "", tools: new Map(), last: -1, done: false };
      run.bubble.dataset.runId = event.run_id;
      state.runs.set(event.run_id, run);
    }
    return run;
  }

  function onEvent(event) {
    if (event.event === "Error") {
      const waiting = state.pending.findIndex((p) => p.id === event.id);
      if (waiting >= 0) {
        const [{ bubble }] = state.pending.splice(waiting, 1);
        bubble.classList.remove("streaming");
        bubble.classList.add("failed");
        bubble.append(el("div", "status", event.content));
      } else {
        showNotice(event.content);
      }
      refreshButtons();
      return;
    }
    if (event.event === "CancelRequested" || !event.run_id) return;
    const run = runFor(event);
    if (event.event_index <= run.last) return; // already shown (a resume overlaps what we had)
    run.last = event.event_index;
    switch (event.event) {
      case "RunStarted":
        if (!state.sessionId || state.sessionId !== event.session_id) {
          const isNew = !state.sessionId;
          state.sessionId = event.session_id;
          rememberLocation();
          if (isNew) loadSessions();
        }
        break;
      case "RunContent":
        if (event.content_type === "json") break; // the whole object arrives with RunCompleted
        run.text += event.content;
        run.bubble.querySelector(".text").textContent = run.text;
        break;
      case "ToolCallStarted":
        toolChip(run, event.tool);
        break;
      case "ToolCallCompleted": {
        const chip = toolChip(run, event.tool);
        chip.classList.remove("running");
        chip.querySelector(".tool-result").textContent = ` → ${brief(event.content)}`;
        break;
      }
      case "ToolCallError": {
        const chip = toolChip(run, event.tool);
        chip.classList.remove("running");
        chip.classList.add("failed");
        chip.querySelector(".tool-result").textContent = ` ✗ ${brief(event.error)}`;
        break;
      }
      case "RunCompleted":
        run.done = true;
        run.bubble.querySelector(".text").textContent =
          event.content_type === "json" ? JSON.stringify(event.content, null, 2) : (event.content ?? run.text);
        status(run, "completed");
        break;
      case "RunError":
        run.done = true;
        status(run, "failed", `Error: ${event.content}`);
        break;
      case "RunCancelled":
        run.done = true;
        status(run, "cancelled", "Stopped.");
        break;
      default:
        break;
    }
    refreshButtons();
    scrollDown();
  }

  // ---- the websocket ------------------------------------------------------------------------------

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${cfg.wsPath}${encodeURIComponent(state.agent)}/`;
  }

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
    else state.outbox.push(frame);
  }

  function connect() {
    if (!state.agent) return;
    const ws = new WebSocket(wsUrl(), ["agentos"]);
    state.ws = ws;
    els.conn.textContent = "connecting…";
    ws.onopen = () => {
      const reconnected = state.connectedOnce;
      state.connectedOnce = true;
      state.retry = 0;
      els.conn.textContent = "connected";
      els.conn.className = "conn ok";
      if (reconnected && state.pending.length && !state.outbox.length && state.sessionId) {
        // A message went out just before the connection dropped: its run id never came back.
        // The server knows what happened to it; reopening the session shows it (and resumes it).
        openSession(state.sessionId);
        return;
      }
      // Pick up every unfinished run after the last event shown, then send what waited.
      for (const [runId, run] of state.runs) {
        if (!run.done) ws.send(JSON.stringify({ type: "resume", run_id: runId, after_event_index: run.last }));
      }
      for (const frame of state.outbox.splice(0)) ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (message) => onEvent(JSON.parse(message.data));
    ws.onclose = (closed) => {
      if (state.ws !== ws) return; // replaced on purpose (another agent)
      els.conn.textContent = "reconnecting…";
      els.conn.className = "conn";
      if (closed.code === 4401) {
        location.reload(); // signed out: the page sends us to the login
        return;
      }
      setTimeout(connect, Math.min(250 * 2 ** state.retry++, 8000));
    };
  }

  function reconnect() {
    const old = state.ws;
    state.ws = null;
    state.connectedOnce = false;
    if (old) old.close();
    state.outbox = [];
    connect();
  }

  // ---- sessions -------------------------------------------------------------------------------------

  function rememberLocation() {
    const params = new URLSearchParams({ agent: state.agent });
    if (state.sessionId) params.set("session", state.sessionId);
    history.replaceState(null, "", `${location.pathname}?${params}`);
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401 || response.status === 403) location.reload();
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    return response.json();
  }

  async function loadSessions() {
    if (!state.agent) return;
    const params = new URLSearchParams({ agent_id: state.agent, page_size: "50" });
    try {
      const page = await getJSON(`${cfg.sessionsUrl}?${params}`);
      els.list.replaceChildren(
        ...(page.results || []).map((session) => {
          const item = el("li");
          const button = el("button", "session", session.name || "Untitled");
          button.type = "button";
          button.dataset.sessionId = session.session_id;
          button.title = new Date(session.updated_at).toLocaleString();
          if (session.session_id === state.sessionId) button.classList.add("current");
          button.addEventListener("click", () => {
            openSession(session.session_id);
            closeDrawer();
          });
          item.append(button);
          return item;
        }),
      );
    } catch (error) {
      showNotice(`Could not load your conversations (${error.message}).`);
    }
  }

  function clearConversation() {
    state.runs.clear();
    state.pending = [];
    els.messages.replaceChildren();
    showNotice("");
    refreshButtons();
  }

  async function openSession(sessionId) {
    clearConversation();
    state.sessionId = sessionId;
    rememberLocation();
    for (const button of els.list.querySelectorAll(".session")) {
      button.classList.toggle("current", button.dataset.sessionId === sessionId);
    }
    let session;
    try {
      session = await getJSON(cfg.sessionUrlTemplate.replace(cfg.sessionPlaceholder, sessionId));
    } catch (error) {
      showNotice(`Could not open that conversation (${error.message}).`);
      state.sessionId = null;
      rememberLocation();
      return;
    }
    if (state.sessionId !== sessionId) return; // another one was opened meanwhile
    for (const stored of session.runs || []) {
      userBubble(stored.input);
      const bubble = assistantBubble();
      bubble.dataset.runId = stored.run_id;
      const run = { bubble, text: "", tools: new Map(), last: -1, done: stored.status !== "running" };
      state.runs.set(stored.run_id, run);
      if (!run.done) {
        // Still answering (a reload mid-run, or another device): replay it from the start.
        send({ type: "resume", run_id: stored.run_id, after_event_index: -1 });
        continue;
      }
      renderStored(run, stored);
    }
    refreshButtons();
    scrollDown();
  }

  function renderStored(run, stored) {
    const results = new Map();
    for (const message of stored.messages || []) {
      if (message.role === "tool") results.set(message.tool_call_id, message.content);
    }
    for (const message of stored.messages || []) {
      for (const call of message.tool_calls || []) {
        let args = call.function && call.function.arguments;
        try {
          args = JSON.parse(args);
        } catch (_) {
          /* keep the raw text */
        }
        const chip = toolChip(run, { tool_call_id: call.id, tool_name: call.function && call.function.name, tool_args: args });
        chip.classList.remove("running");
        if (results.has(call.id)) chip.querySelector(".tool-result").textContent = ` → ${brief(results.get(call.id))}`;
      }
    }
    const content = stored.content;
    run.bubble.querySelector(".text").textContent =
      content !== null && typeof content === "object" ? JSON.stringify(content, null, 2) : content || "";
    if (stored.status === "error") status(run, "failed", `Error: ${stored.error}`);
    else if (stored.status === "cancelled") status(run, "cancelled", "Stopped.");
    else status(run, "completed");
  }

  function newSession() {
    clearConversation();
    state.sessionId = null;
    rememberLocation();
    for (const button of els.list.querySelectorAll(".session")) button.classList.remove("current");
    els.input.focus();
  }

  // ---- the composer and the controls --------------------------------------------------------------

  function submit(event) {
    event.preventDefault();
    const text = els.input.value.trim();
    if (!text || !state.agent) return;
    const max = Number(cfg.maxChars || 0);
    if (max && text.length > max) {
      showNotice(`Messages are limited to ${max} characters.`);
      return;
    }
    showNotice("");
    userBubble(text);
    const id = state.nextId++;
    state.pending.push({ id, bubble: assistantBubble() });
    const frame = { type: "run", message: text, id };
    if (state.sessionId) frame.session_id = state.sessionId;
    send(frame);
    els.input.value = "";
    refreshButtons();
  }

  function stop() {
    for (const [runId, run] of state.runs) {
      if (!run.done) send({ type: "cancel", run_id: runId });
    }
  }

  function closeDrawer() {
    els.sessions.classList.remove("open");
    els.toggle.setAttribute("aria-expanded", "false");
  }

  els.form.addEventListener("submit", submit);
  els.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
  });
  els.stop.addEventListener("click", stop);
  els.newSession.addEventListener("click", () => {
    newSession();
    closeDrawer();
  });
  els.toggle.addEventListener("click", () => {
    const open = els.sessions.classList.toggle("open");
    els.toggle.setAttribute("aria-expanded", String(open));
  });
  if (els.agent) {
    els.agent.addEventListener("change", () => {
      state.agent = els.agent.value;
      newSession();
      reconnect();
      loadSessions();
    });
  }

  // ---- start: reopen what the URL names (a reload lands here) -------------------------------------

  const params = new URLSearchParams(location.search);
  connect();
  loadSessions();
  if (params.get("session")) openSession(params.get("session"));
  else rememberLocation();
})();
