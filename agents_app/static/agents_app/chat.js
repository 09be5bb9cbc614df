// The chat page: one websocket per agent, team or workflow, run events rendered as they arrive.
// Every URL comes from data attributes and JSON blocks rendered by the server (the apps may be
// mounted anywhere). Resuming: each run remembers the last event_index shown; after a reconnect the
// page asks for what came after it, and after a reload it reopens the session and replays a running
// answer from the start.
// Teams and workflows: their streams carry their members' and steps' own events (with
// parent_run_id). Those become one compact line per member or step ("step 2: writer ✓"), whose text
// opens on a click; the answer is the team's or workflow's own content and its terminal event.
// Images: the 📎 button attaches images (checked here against the server's limits, which it checks
// again); they go in the run frame as base64 and show in the user's bubble, then and in the history
// (served to their owner by the API's image endpoint).
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
    attach: $("attach"), attachments: $("attachments"),
  };
  const imageTypes = (cfg.imageTypes || "").split(",").filter(Boolean);
  const imageMaxBytes = Number(cfg.imageMaxBytes || 0);
  const imageMaxCount = Number(cfg.imageMaxCount || 0);
  const json = (id) => JSON.parse(document.getElementById(id)?.textContent || "{}");
  const wsPaths = json("chat-ws-paths");
  const names = json("chat-names");
  const intros = json("chat-intros");
  const STARTED = new Set(["RunStarted", "TeamRunStarted", "WorkflowStarted"]);
  const CONTENT = new Set(["RunContent", "TeamRunContent"]);
  const COMPLETED = new Set(["RunCompleted", "TeamRunCompleted", "WorkflowCompleted"]);
  const FAILED = new Set(["RunError", "TeamRunError", "WorkflowError"]);
  const CANCELLED = new Set(["RunCancelled", "TeamRunCancelled", "WorkflowCancelled"]);
  const TOOL_STARTED = new Set(["ToolCallStarted", "TeamToolCallStarted"]);
  const TOOL_COMPLETED = new Set(["ToolCallCompleted", "TeamToolCallCompleted"]);
  const TOOL_ERROR = new Set(["ToolCallError", "TeamToolCallError"]);
  const DELEGATE = "delegate_task_to_member"; // a team leader's hand-off: the member's own line shows it

  function parsePick(value) {
    const at = (value || "").indexOf(":");
    return at < 0 ? { kind: "agent", slug: value || "" } : { kind: value.slice(0, at), slug: value.slice(at + 1) };
  }

  const state = {
    ...parsePick(els.agent ? els.agent.value : ""),
    sessionId: null,
    ws: null,
    outbox: [],
    retry: 0,
    runs: new Map(), // run_id -> {bubble, text, tools: Map, parts: Map, last, done}
    pending: [], // bubbles of "run" frames sent, waiting for their RunStarted: {id, bubble}
    nextId: 1,
    childParents: new Map(), // a member's or step's run_id -> its parent's run_id
    connectedOnce: false,
    attachments: [], // images to send with the next message: {file, url}
    reading: false, // the attached images are being read for a message
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

  // `images`: [{src, name}], shown above the text.
  function userBubble(text, images) {
    const bubble = el("div", "msg user");
    if (images && images.length) {
      const strip = el("div", "images");
      for (const image of images) {
        const img = el("img");
        img.src = image.src;
        img.alt = image.name || "image";
        img.referrerPolicy = "no-referrer";
        img.loading = "lazy";
        strip.append(img);
      }
      bubble.append(strip);
    }
    bubble.append(el("div", "text", text));
    els.messages.append(bubble);
    scrollDown();
    return bubble;
  }

  function assistantBubble() {
    const bubble = el("div", "msg assistant streaming");
    bubble.append(el("div", "parts"), el("div", "tools"), el("div", "text"));
    els.messages.append(bubble);
    scrollDown();
    return bubble;
  }

  function brief(value, limit = 160) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text && text.length > limit ? text.slice(0, limit) + "…" : text || "";
  }

  function newRun(bubble) {
    return { bubble, text: "", tools: new Map(), parts: new Map(), last: -1, done: false };
  }

  function displayName(kind, slug) {
    return (names[kind] && names[kind][slug]) || slug || "";
  }

  function stepNumber(index) {
    return (Array.isArray(index) ? index : [index]).map((i) => Number(i) + 1).join(".");
  }

  // One line per member run or workflow step: a label, a state mark, a one-line preview of its
  // text; a click opens its whole text. Keyed by the child's run id or "step:<index>".
  function partLine(run, key, label, depth) {
    let part = run.parts.get(key);
    if (!part) {
      const line = el("details", "part running");
      line.style.setProperty("--depth", String(depth || 0));
      const summary = el("summary");
      summary.append(el("span", "part-mark"), el("span", "part-label", label), el("span", "part-preview"));
      line.append(summary, el("div", "part-text"));
      part = { line, text: "", depth: depth || 0 };
      run.parts.set(key, part);
      run.bubble.querySelector(".parts").append(line);
    }
    return part;
  }

  // The preview shows the newest words while the text streams, its beginning once it is done.
  function partText(part, text) {
    part.text = text;
    part.line.querySelector(".part-text").textContent = text;
    const flat = text.replace(/\s+/g, " ").trim();
    const streaming = part.line.classList.contains("running");
    part.line.querySelector(".part-preview").textContent = streaming && flat.length > 90 ? "…" + flat.slice(-90) : flat;
  }

  function partNote(part, note) {
    part.line.querySelector(".part-preview").textContent = note;
  }

  function partDone(part, cls) {
    part.line.classList.remove("running");
    part.line.classList.add(cls);
    if (cls === "completed") partText(part, part.text);
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
      run = newRun(waiting ? waiting.bubble : assistantBubble());
      run.bubble.dataset.runId = event.run_id;
      state.runs.set(event.run_id, run);
    }
    return run;
  }

  // The top-level run a member's or step's event belongs to (members of members included).
  function topRunOf(event) {
    let id = event.parent_run_id;
    for (let hops = 0; id && hops < 32; hops++) {
      if (state.runs.has(id)) return { run: state.runs.get(id), id };
      id = state.childParents.get(id);
    }
    return null;
  }

  // A member's or step's own event, shown on its line; never in the answer.
  function onNestedEvent(event) {
    const top = topRunOf(event);
    if (!top) return;
    const run = top.run;
    if (event.event_index <= run.last) return; // already shown
    run.last = event.event_index;
    if (run.replay === "pending") {
      run.replay = "on";
      run.parts.clear();
      run.bubble.querySelector(".parts").replaceChildren();
    }
    state.childParents.set(event.run_id, event.parent_run_id);
    let part = run.parts.get(event.run_id);
    if (STARTED.has(event.event)) {
      const kind = { RunStarted: "agent", TeamRunStarted: "team", WorkflowStarted: "workflow" }[event.event];
      const who = displayName(kind, event[`${kind}_id`]);
      const direct = event.parent_run_id === top.id;
      if (direct && event.step_name !== undefined && event.step_index !== undefined) {
        // A workflow step's run: its step's line, labelled with who answers.
        part = partLine(run, `step:${JSON.stringify(event.step_index)}`, `step ${stepNumber(event.step_index)}: ${event.step_name}`, 0);
        part.line.querySelector(".part-label").textContent = `step ${stepNumber(event.step_index)}: ${event.step_name} · ${who}`;
      } else {
        const parent = run.parts.get(event.parent_run_id);
        part = partLine(run, event.run_id, who, direct ? 0 : (parent ? parent.depth : 0) + 1);
      }
      run.parts.set(event.run_id, part);
      return;
    }
    if (!part) return;
    if (CONTENT.has(event.event)) {
      if (event.content_type !== "json") partText(part, part.text + event.content);
    } else if (TOOL_STARTED.has(event.event)) {
      if (event.tool && event.tool.tool_name !== DELEGATE) partNote(part, `using ${event.tool.tool_name}…`);
    } else if (COMPLETED.has(event.event)) {
      partText(part, typeof event.content === "string" ? event.content : JSON.stringify(event.content ?? part.text, null, 2));
      if (!event.step_name || event.parent_run_id !== top.id) partDone(part, "completed"); // (a step: StepCompleted)
    } else if (FAILED.has(event.event)) {
      partDone(part, "failed");
      partNote(part, `Error: ${event.content}`);
    } else if (CANCELLED.has(event.event)) {
      partDone(part, "cancelled");
      partNote(part, "stopped");
    }
  }

  // A workflow's own StepStarted/StepCompleted: the step's line (function steps have no run).
  function onStep(run, event) {
    const key = `step:${JSON.stringify(event.step_index)}`;
    const depth = Array.isArray(event.step_index) ? event.step_index.length - 1 : 0;
    const part = partLine(run, key, `step ${stepNumber(event.step_index)}: ${event.step_name}`, depth);
    if (event.event === "StepStarted") return;
    if (event.condition_result === false) {
      partDone(part, "skipped");
      partNote(part, "skipped: the condition was not met");
      return;
    }
    if (event.content !== null && event.content !== undefined && event.step_type !== "condition") {
      partText(part, typeof event.content === "string" ? event.content : JSON.stringify(event.content, null, 2));
    }
    partDone(part, "completed");
  }

  function finishParts(run, cls) {
    for (const part of run.parts.values()) {
      if (part.line.classList.contains("running")) partDone(part, cls);
    }
  }

  function onEvent(event) {
    if (event.event === "Error") {
      if (event.run_id && state.runs.get(event.run_id)?.replay) return; // the stored lines stay
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
    if (event.parent_run_id) {
      onNestedEvent(event);
      scrollDown();
      return;
    }
    const run = runFor(event);
    if (event.event_index <= run.last) return; // already shown (a resume overlaps what we had)
    run.last = event.event_index;
    const name = event.event;
    if (run.replay) {
      // A finished team or workflow run, opened again: its answer is shown; its events only
      // redraw the member and step lines (the stored runs lack the steps' names).
      if (run.replay === "pending") {
        run.replay = "on";
        run.parts.clear();
        run.bubble.querySelector(".parts").replaceChildren();
      }
      if (name === "StepStarted" || name === "StepCompleted") onStep(run, event);
      return;
    }
    if (STARTED.has(name)) {
      if (!state.sessionId || state.sessionId !== event.session_id) {
        const isNew = !state.sessionId;
        state.sessionId = event.session_id;
        rememberLocation();
        if (isNew) loadSessions();
      }
    } else if (CONTENT.has(name)) {
      if (event.content_type !== "json") {
        // (a JSON answer arrives whole with the terminal event)
        run.text += event.content;
        run.bubble.querySelector(".text").textContent = run.text;
      }
    } else if (name === "StepStarted" || name === "StepCompleted") {
      onStep(run, event);
    } else if (TOOL_STARTED.has(name)) {
      if (event.tool.tool_name !== DELEGATE) toolChip(run, event.tool);
    } else if (TOOL_COMPLETED.has(name)) {
      if (event.tool.tool_name !== DELEGATE) {
        const chip = toolChip(run, event.tool);
        chip.classList.remove("running");
        chip.querySelector(".tool-result").textContent = ` → ${brief(event.content)}`;
      }
    } else if (TOOL_ERROR.has(name)) {
      const chip = toolChip(run, event.tool);
      chip.classList.remove("running");
      chip.classList.add("failed");
      chip.querySelector(".tool-result").textContent = ` ✗ ${brief(event.error)}`;
    } else if (COMPLETED.has(name)) {
      run.done = true;
      run.bubble.querySelector(".text").textContent =
        event.content_type === "json" ? JSON.stringify(event.content, null, 2) : (event.content ?? run.text);
      finishParts(run, "completed");
      status(run, "completed");
    } else if (FAILED.has(name)) {
      run.done = true;
      finishParts(run, "failed");
      status(run, "failed", `Error: ${event.content}${event.step_name ? ` (step ${event.step_name})` : ""}`);
    } else if (CANCELLED.has(name)) {
      run.done = true;
      finishParts(run, "cancelled");
      status(run, "cancelled", "Stopped.");
    }
    refreshButtons();
    scrollDown();
  }

  // ---- the websocket ------------------------------------------------------------------------------

  function wsUrl() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${location.host}${wsPaths[state.kind]}${encodeURIComponent(state.slug)}/`;
  }

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
    else state.outbox.push(frame);
  }

  function connect() {
    if (!state.slug || !wsPaths[state.kind]) return;
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
      if (state.ws !== ws) return; // replaced on purpose (another agent, team or workflow)
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
    const params = new URLSearchParams({ [state.kind]: state.slug });
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
    if (!state.slug) return;
    const params = new URLSearchParams({ [`${state.kind}_id`]: state.slug, page_size: "50" });
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
    state.childParents.clear();
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
    // Member and step runs are stored in the session too: they become lines of their top run.
    const all = session.runs || [];
    const parents = new Map(all.map((stored) => [stored.run_id, stored.parent_run_id]));
    const topOf = (stored) => {
      let id = stored.parent_run_id;
      for (let hops = 0; parents.get(id) && hops < 32; hops++) id = parents.get(id);
      return id;
    };
    const children = new Map();
    for (const stored of all) {
      if (!stored.parent_run_id) continue;
      const top = topOf(stored);
      if (!children.has(top)) children.set(top, []);
      children.get(top).push(stored);
    }
    for (const stored of all.filter((r) => !r.parent_run_id)) {
      userBubble(stored.input, (stored.images || []).map((image) => ({ src: image.url, name: image.name })));
      const bubble = assistantBubble();
      bubble.dataset.runId = stored.run_id;
      const run = newRun(bubble);
      run.done = stored.status !== "running";
      state.runs.set(stored.run_id, run);
      if (!run.done) {
        // Still answering (a reload mid-run, or another device): replay it from the start.
        send({ type: "resume", run_id: stored.run_id, after_event_index: -1 });
        continue;
      }
      renderStoredParts(run, stored.run_id, children.get(stored.run_id) || []);
      renderStored(run, stored);
      if (stored.team_id || stored.workflow_id) {
        // Redraw its member and step lines from its stored events (until they come, or if they
        // cannot, the lines drawn from the stored member and step runs stay).
        run.replay = "pending";
        send({ type: "resume", run_id: stored.run_id, after_event_index: -1 });
      }
    }
    refreshButtons();
    scrollDown();
  }

  function renderStoredParts(run, topId, stored) {
    const depth = new Map([[topId, -1]]);
    for (const child of stored) {
      const kind = child.team_id ? "team" : child.workflow_id ? "workflow" : "agent";
      const level = (depth.get(child.parent_run_id) ?? 0) + 1;
      depth.set(child.run_id, level);
      const part = partLine(run, child.run_id, displayName(kind, child[`${kind}_id`]), level);
      const content = child.content;
      partText(part, content !== null && typeof content === "object" ? JSON.stringify(content, null, 2) : content || "");
      if (child.status === "error") {
        partDone(part, "failed");
        partNote(part, `Error: ${child.error}`);
      } else partDone(part, child.status === "cancelled" ? "cancelled" : "completed");
    }
  }

  function renderStored(run, stored) {
    const results = new Map();
    for (const message of stored.messages || []) {
      if (message.role === "tool") results.set(message.tool_call_id, message.content);
    }
    for (const message of stored.messages || []) {
      for (const call of message.tool_calls || []) {
        if (call.function && call.function.name === DELEGATE) continue; // the member's line shows it
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

  // A new conversation starts with who answers: a team's members, a workflow's steps.
  function showIntro() {
    const intro = intros[`${state.kind}:${state.slug}`];
    if (!intro || els.messages.childElementCount) return;
    const box = el("div", "intro");
    box.append(el("p", "intro-kind", state.kind), el("h2", null, intro.name));
    if (intro.description) box.append(el("p", null, intro.description));
    if (intro.parts.length) {
      const label = state.kind === "team" ? "Members" : "Steps";
      const list = el(state.kind === "workflow" ? "ol" : "ul", "intro-parts");
      list.setAttribute("aria-label", label);
      for (const part of intro.parts) list.append(el("li", null, part));
      box.append(el("p", "intro-label", `${label}:`), list);
    }
    els.messages.append(box);
  }

  function newSession() {
    clearConversation();
    state.sessionId = null;
    showIntro();
    rememberLocation();
    for (const button of els.list.querySelectorAll(".session")) button.classList.remove("current");
    els.input.focus();
  }

  // ---- the composer and the controls --------------------------------------------------------------

  // ---- attached images -----------------------------------------------------------------------------

  function renderAttachments() {
    els.attachments.replaceChildren(
      ...state.attachments.map((attachment, index) => {
        const item = el("figure", "attachment");
        const img = el("img");
        img.src = attachment.url;
        img.alt = attachment.file.name;
        const remove = el("button", "remove", "×");
        remove.type = "button";
        remove.title = `Remove ${attachment.file.name}`;
        remove.addEventListener("click", () => {
          URL.revokeObjectURL(attachment.url);
          state.attachments.splice(index, 1);
          renderAttachments();
        });
        item.append(img, remove);
        return item;
      }),
    );
    els.attachments.hidden = state.attachments.length === 0;
  }

  function attach(files) {
    const refused = [];
    for (const file of files) {
      if (state.attachments.length >= imageMaxCount) {
        refused.push(`${file.name}: at most ${imageMaxCount} images per message`);
      } else if (!imageTypes.includes(file.type)) {
        refused.push(`${file.name}: not one of ${imageTypes.map((t) => t.replace("image/", "")).join(", ")}`);
      } else if (file.size > imageMaxBytes) {
        refused.push(`${file.name}: larger than ${Math.floor(imageMaxBytes / 1048576)} MiB`);
      } else {
        state.attachments.push({ file, url: URL.createObjectURL(file) });
      }
    }
    showNotice(refused.length ? `Not attached: ${refused.join("; ")}.` : "");
    renderAttachments();
  }

  // An image as the run frame carries it: its bytes as base64.
  function readImage(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        resolve({ data: url.slice(url.indexOf(",") + 1), mime_type: file.type, name: file.name });
      };
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function submit(event) {
    event.preventDefault();
    const text = els.input.value.trim();
    if (!text || !state.slug || state.reading) return;
    const max = Number(cfg.maxChars || 0);
    if (max && text.length > max) {
      showNotice(`Messages are limited to ${max} characters.`);
      return;
    }
    const attached = state.attachments;
    let images = [];
    if (attached.length) {
      state.reading = true;
      try {
        images = await Promise.all(attached.map((attachment) => readImage(attachment.file)));
      } catch (error) {
        showNotice(`Could not read an image (${error}).`);
        return;
      } finally {
        state.reading = false;
      }
    }
    showNotice("");
    els.messages.querySelector(".intro")?.remove();
    userBubble(text, attached.map((attachment) => ({ src: attachment.url, name: attachment.file.name })));
    const id = state.nextId++;
    state.pending.push({ id, bubble: assistantBubble() });
    const frame = { type: "run", message: text, id };
    if (state.sessionId) frame.session_id = state.sessionId;
    if (images.length) frame.images = images;
    send(frame);
    els.input.value = "";
    state.attachments = []; // (their object URLs now show in the bubble)
    renderAttachments();
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
  els.attach.addEventListener("change", () => {
    attach([...els.attach.files]);
    els.attach.value = ""; // the same file can be attached again
  });
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
      Object.assign(state, parsePick(els.agent.value));
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
  else newSession();
})();
