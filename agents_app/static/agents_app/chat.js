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
// Answers are Markdown: marked turns them into HTML and DOMPurify keeps only safe HTML (both
// vendored, static/agents_app/vendor/), re-rendered at most once a frame while the text grows;
// code blocks get a Copy button. A paused run (RunPaused) shows its waiting tool calls with
// Approve / Reject (and fields for user input or an external result); the decisions go in a
// `continue` frame and the same bubble goes on with the continued run.
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
    attach: $("attach"), attachments: $("attachments"), search: $("session-search"),
    sessionEmpty: $("session-empty"), announce: $("announce"),
  };
  const csrfToken = document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
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
  const PAUSED = new Set(["RunPaused", "TeamRunPaused", "WorkflowPaused"]);
  const CONTINUED = new Set(["RunContinued", "TeamRunContinued", "StepContinued"]);
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
    continuing: new Map(), // a continue frame's id -> {run, reset}
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

  // ---- Markdown -------------------------------------------------------------------------------------

  const markdownReady = () => Boolean(window.marked && window.DOMPurify && window.DOMPurify.isSupported);
  if (markdownReady()) {
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      // Links open elsewhere and tell nothing about this page.
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
      if (node.tagName === "IMG") node.setAttribute("referrerpolicy", "no-referrer");
    });
  }

  // `target` shows `text` as Markdown, sanitised; without the libraries, as plain text.
  function renderMarkdown(target, text) {
    if (!markdownReady()) {
      target.textContent = text;
      return;
    }
    const html = window.marked.parse(text || "", { gfm: true, breaks: false, async: false });
    const clean = window.DOMPurify.sanitize(html, {
      USE_PROFILES: { html: true },
      FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "video", "audio"],
      FORBID_ATTR: ["style"],
    });
    target.innerHTML = clean;
    target.classList.add("markdown");
    for (const pre of target.querySelectorAll("pre")) addCopyButton(pre);
  }

  function addCopyButton(pre) {
    const code = pre.querySelector("code") || pre;
    const lang = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9) || "";
    const box = el("div", "code-block");
    const head = el("div", "code-head");
    const copy = el("button", "copy", "Copy");
    copy.type = "button";
    copy.setAttribute("aria-label", lang ? `Copy ${lang} code` : "Copy code");
    copy.addEventListener("click", () => copyText(code.textContent.replace(/\n$/, ""), copy));
    head.append(el("span", "code-lang", lang), copy);
    pre.replaceWith(box);
    box.append(head, pre);
  }

  async function copyText(text, button) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(text);
      ok = true;
    } catch (_) {
      // (no clipboard API: an insecure origin) the old way
      const area = el("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.append(area);
      area.select();
      ok = document.execCommand("copy");
      area.remove();
    }
    button.textContent = ok ? "Copied" : "Copy failed";
    announce(ok ? "Code copied." : "Could not copy the code.");
    setTimeout(() => (button.textContent = "Copy"), 1500);
  }

  // A streamed answer is drawn again from its whole text at most once a frame (so a half-written
  // code fence or list is always drawn from the text so far, and always sanitised).
  function drawAnswer(run) {
    if (run.drawing) return;
    run.drawing = requestAnimationFrame(() => {
      run.drawing = 0;
      renderMarkdown(run.bubble.querySelector(".text"), run.text);
      scrollDown();
    });
  }

  // The answer as it ends: Markdown text, or an output schema's JSON shown as code.
  function showAnswer(run, content, isJson) {
    if (run.drawing) cancelAnimationFrame(run.drawing);
    run.drawing = 0;
    const target = run.bubble.querySelector(".text");
    if (isJson) {
      const pre = el("pre");
      pre.append(el("code", "language-json", JSON.stringify(content, null, 2)));
      target.replaceChildren(pre);
      target.classList.add("markdown");
      addCopyButton(pre);
    } else {
      renderMarkdown(target, content ?? "");
    }
  }

  function announce(text) {
    els.announce.textContent = "";
    // (a change the screen reader notices even when the text is the same as the last one)
    setTimeout(() => (els.announce.textContent = text), 50);
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
    bubble.setAttribute("aria-busy", "true");
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
  // A member's or step's text: Markdown like the answer (drawn at most once a frame), or JSON as
  // code (`asCode`: an output schema's object).
  function partText(part, text, asCode = part.asCode) {
    part.text = text;
    part.asCode = Boolean(asCode);
    if (!part.drawing) {
      part.drawing = requestAnimationFrame(() => {
        part.drawing = 0;
        const target = part.line.querySelector(".part-text");
        if (part.asCode) {
          const pre = el("pre");
          pre.append(el("code", "language-json", part.text));
          target.replaceChildren(pre);
          target.classList.add("markdown");
          addCopyButton(pre);
        } else renderMarkdown(target, part.text);
      });
    }
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
    run.bubble.removeAttribute("aria-busy");
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

  // ---- human in the loop: a paused run's waiting tool calls -------------------------------------

  function waiting(tool) {
    if (tool.requires_confirmation && (tool.confirmed === null || tool.confirmed === undefined)) return true;
    if (tool.requires_user_input && !tool.answered) return true;
    return Boolean(tool.external_execution_required) && (tool.result === null || tool.result === undefined);
  }

  // One field per argument the user fills (or may edit), typed as the tool's schema says.
  function inputField(tool, spec) {
    const id = `in-${tool.tool_call_id}-${spec.name}`.replace(/[^A-Za-z0-9_-]/g, "_");
    const row = el("div", "field");
    const label = el("label", null, spec.name);
    label.htmlFor = id;
    if (spec.description) label.append(el("span", "hint", ` (${spec.description})`));
    let input;
    if (spec.field_type === "bool") {
      input = el("input");
      input.type = "checkbox";
      input.checked = Boolean(spec.value);
    } else if (spec.field_type === "list" || spec.field_type === "dict") {
      input = el("textarea");
      input.rows = 2;
      input.value = spec.value === null || spec.value === undefined ? "" : JSON.stringify(spec.value);
      input.placeholder = spec.field_type === "list" ? "JSON list, e.g. [1, 2]" : 'JSON object, e.g. {"a": 1}';
    } else {
      input = el("input");
      input.type = spec.field_type === "int" || spec.field_type === "float" ? "number" : "text";
      if (spec.field_type === "float") input.step = "any";
      input.value = spec.value === null || spec.value === undefined ? "" : String(spec.value);
    }
    input.id = id;
    input.dataset.name = spec.name;
    input.dataset.type = spec.field_type || "str";
    row.append(label, input);
    return row;
  }

  function fieldValue(input) {
    const type = input.dataset.type;
    if (type === "bool") return input.checked;
    const raw = input.value.trim();
    if (type === "int" || type === "float") {
      if (raw === "" || Number.isNaN(Number(raw))) throw new Error(`${input.dataset.name}: a number, please.`);
      return type === "int" ? Math.trunc(Number(raw)) : Number(raw);
    }
    if (type === "list" || type === "dict") {
      try {
        return JSON.parse(raw);
      } catch (_) {
        throw new Error(`${input.dataset.name}: JSON, please.`);
      }
    }
    return input.value;
  }

  // The waiting calls of a paused run, each with Approve / Reject (and its fields); when every
  // call has a decision, they go in one `continue` frame.
  function showApproval(run, event) {
    run.bubble.querySelector(".approval")?.remove();
    const tools = (event.tools || []).filter(waiting);
    if (!tools.length) return;
    const box = el("section", "approval");
    box.setAttribute("aria-label", "Waiting for your decision");
    box.append(el("p", "approval-title", tools.length > 1 ? "These tool calls wait for your decision:" : "This tool call waits for your decision:"));
    const decisions = new Map();
    const error = el("p", "approval-error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    const fail = (text) => {
      error.textContent = text;
      error.hidden = !text;
    };
    const sendAll = () => {
      const id = state.nextId++;
      state.continuing.set(id, { run, reset });
      box.classList.add("sending");
      send({ type: "continue", run_id: run.bubble.dataset.runId, decisions: tools.map((t) => decisions.get(t.tool_call_id)), id });
    };
    const fieldsets = [];
    const reset = (text) => {
      decisions.clear();
      box.classList.remove("sending");
      for (const set of fieldsets) {
        set.disabled = false;
        set.querySelector(".decided").textContent = "";
      }
      fail(text);
    };
    for (const tool of tools) {
      const set = el("fieldset", "approval-tool");
      set.dataset.toolCallId = tool.tool_call_id;
      const legend = el("legend");
      legend.append(el("code", null, `${tool.tool_name}(${brief(tool.tool_args || {}, 200)})`));
      set.append(legend);
      for (const spec of tool.user_input_schema || []) set.append(inputField(tool, spec));
      let result = null;
      if (tool.external_execution_required) {
        const id = `result-${tool.tool_call_id}`.replace(/[^A-Za-z0-9_-]/g, "_");
        const row = el("div", "field");
        const label = el("label", null, "Result (you ran this tool; the model gets what you write here)");
        label.htmlFor = id;
        result = el("textarea");
        result.id = id;
        result.rows = 3;
        result.className = "external-result";
        row.append(label, result);
        set.append(row);
      }
      const noteId = `note-${tool.tool_call_id}`.replace(/[^A-Za-z0-9_-]/g, "_");
      const noteRow = el("div", "field");
      const noteLabel = el("label", null, "Note (optional; told to the model if you reject)");
      noteLabel.htmlFor = noteId;
      const note = el("input");
      note.id = noteId;
      note.className = "note";
      noteRow.append(noteLabel, note);
      set.append(noteRow);
      const approve = el("button", "approve", tool.external_execution_required ? "Send result" : "Approve");
      approve.type = "button";
      approve.setAttribute("aria-label", `${approve.textContent}: ${tool.tool_name}`);
      const reject = el("button", "reject", "Reject");
      reject.type = "button";
      reject.setAttribute("aria-label", `Reject: ${tool.tool_name}`);
      const decided = el("span", "decided");
      decided.setAttribute("aria-live", "polite");
      const row = el("div", "approval-buttons");
      row.append(approve, reject, decided);
      set.append(row);
      const decide = (decision) => {
        fail("");
        if (decision.decision === "approve") {
          try {
            const args = {};
            for (const input of set.querySelectorAll("[data-name]")) args[input.dataset.name] = fieldValue(input);
            if (Object.keys(args).length) decision.arguments = args;
            if (result) {
              if (!result.value.trim()) throw new Error("Write the tool's result first.");
              decision.result = result.value;
            }
          } catch (problem) {
            fail(problem.message);
            return;
          }
        }
        if (note.value.trim()) decision.note = note.value.trim();
        const hadFocus = set.contains(document.activeElement);
        decisions.set(tool.tool_call_id, decision);
        set.disabled = true;
        decided.textContent = decision.decision === "approve" ? "approved" : "rejected";
        if (decisions.size === tools.length) {
          sendAll();
          // The box goes away as the answer goes on: keep the keyboard's place on the answer
          // (not lost to the page's start).
          if (hadFocus) {
            run.bubble.tabIndex = -1;
            run.bubble.focus({ preventScroll: true });
          }
        } else fieldsets.find((f) => !f.disabled)?.querySelector("button, input, textarea")?.focus();
      };
      approve.addEventListener("click", () => decide({ tool_call_id: tool.tool_call_id, decision: "approve" }));
      reject.addEventListener("click", () => decide({ tool_call_id: tool.tool_call_id, decision: "reject" }));
      fieldsets.push(set);
      box.append(set);
    }
    box.append(error);
    run.bubble.append(box);
    scrollDown();
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
      if (typeof event.content === "string") partText(part, event.content, false);
      else if (event.content !== null && event.content !== undefined) partText(part, JSON.stringify(event.content, null, 2), true);
      else partText(part, part.text);
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
      const isJson = typeof event.content !== "string";
      partText(part, isJson ? JSON.stringify(event.content, null, 2) : event.content, isJson);
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
      if (state.continuing.has(event.id)) {
        const { run, reset } = state.continuing.get(event.id);
        state.continuing.delete(event.id);
        if (event.code === "run_not_paused") {
          // It expired, was cancelled or was decided elsewhere meanwhile: deciding again cannot
          // help; its stored events after the pause show what became of it.
          run.bubble.querySelector(".approval")?.remove();
          run.bubble.classList.remove("paused");
          send({ type: "resume", run_id: run.bubble.dataset.runId, after_event_index: run.last });
          return;
        }
        // A refused continue: the decisions can be made again.
        reset(event.content);
        return;
      }
      const waiting = state.pending.findIndex((p) => p.id === event.id);
      if (waiting >= 0) {
        const [{ bubble }] = state.pending.splice(waiting, 1);
        bubble.classList.remove("streaming");
        bubble.classList.add("failed");
        const text =
          event.code === "session_paused"
            ? "This conversation waits for your decision on a tool call above: approve or reject it first, then send your message again."
            : event.content;
        bubble.append(el("div", "status", text));
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
        drawAnswer(run);
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
      const isJson = event.content_type === "json";
      showAnswer(run, isJson ? event.content : (event.content ?? run.text), isJson);
      finishParts(run, "completed");
      status(run, "completed");
      announce(`Answer: ${run.bubble.querySelector(".text").textContent}`);
    } else if (PAUSED.has(name)) {
      run.done = true;
      if (run.text) showAnswer(run, run.text, false);
      status(run, "paused");
      showApproval(run, event);
      announce("The answer is waiting for your decision on a tool call.");
    } else if (CONTINUED.has(name)) {
      run.done = false;
      run.bubble.classList.remove("paused");
      run.bubble.classList.add("streaming");
      run.bubble.setAttribute("aria-busy", "true");
      run.bubble.querySelector(".approval")?.remove();
      for (const [id, waiting] of state.continuing) if (waiting.run === run) state.continuing.delete(id);
      for (const tool of event.tools || []) {
        const chip = toolChip(run, tool);
        if (tool.confirmed === false) {
          chip.classList.remove("running");
          chip.classList.add("rejected");
          chip.querySelector(".tool-result").textContent = " ✗ rejected" + (tool.confirmation_note ? `: ${tool.confirmation_note}` : "");
        }
      }
    } else if (FAILED.has(name)) {
      run.done = true;
      finishParts(run, "failed");
      status(run, "failed", `Error: ${event.content}${event.step_name ? ` (step ${event.step_name})` : ""}`);
      run.bubble.querySelector(".approval")?.remove();
      announce(`The answer failed: ${event.content}`);
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
      els.conn.textContent = els.conn.title = "connected";
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
      els.conn.textContent = els.conn.title = "reconnecting…";
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

  // A change to one of my sessions through the API (rename, delete), with the page's CSRF token.
  async function sendJSON(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) location.reload();
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try {
        detail = (await response.json()).detail || detail;
      } catch (_) {
        /* not JSON */
      }
      throw new Error(detail);
    }
    return response.status === 204 ? null : response.json();
  }

  const sessionUrl = (sessionId) => cfg.sessionUrlTemplate.replace(cfg.sessionPlaceholder, sessionId);
  let listing = 0; // the newest list request (an older answer arriving late is dropped)

  async function loadSessions() {
    if (!state.slug) return;
    const params = new URLSearchParams({ [`${state.kind}_id`]: state.slug, page_size: "50" });
    const search = els.search.value.trim();
    if (search) params.set("search", search);
    const mine = ++listing;
    try {
      const page = await getJSON(`${cfg.sessionsUrl}?${params}`);
      if (mine !== listing) return;
      const sessions = page.results || [];
      els.list.replaceChildren(...sessions.map(sessionItem));
      els.sessionEmpty.hidden = sessions.length > 0;
      els.sessionEmpty.textContent = search ? `No conversation matches “${search}”.` : "No conversations yet.";
    } catch (error) {
      showNotice(`Could not load your conversations (${error.message}).`);
    }
  }

  // One conversation in the list: open it, rename it (in place), delete it.
  function sessionItem(session) {
    const item = el("li", "session-item");
    const name = session.name || "Untitled";
    const button = el("button", "session", name);
    button.type = "button";
    button.dataset.sessionId = session.session_id;
    button.title = `${name} · ${new Date(session.updated_at).toLocaleString()}`;
    if (session.session_id === state.sessionId) {
      button.classList.add("current");
      button.setAttribute("aria-current", "true");
    }
    button.addEventListener("click", () => {
      openSession(session.session_id);
      closeDrawer();
    });
    const rename = el("button", "session-action rename", "✎");
    rename.type = "button";
    rename.setAttribute("aria-label", `Rename ${name}`);
    rename.title = "Rename";
    rename.addEventListener("click", () => startRename(item, session));
    const remove = el("button", "session-action delete", "✕");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete ${name}`);
    remove.title = "Delete";
    remove.addEventListener("click", () => deleteSession(session, name));
    item.append(button, rename, remove);
    return item;
  }

  function startRename(item, session) {
    const form = el("form", "rename-form");
    const label = el("label", "visually-hidden", "New name");
    const input = el("input");
    input.id = `rename-${session.session_id}`;
    label.htmlFor = input.id;
    input.value = session.name || "";
    input.maxLength = 200;
    input.required = true;
    const save = el("button", "save", "Save");
    save.type = "submit";
    const cancel = el("button", "cancel", "Cancel");
    cancel.type = "button";
    form.append(label, input, save, cancel);
    const previous = [...item.childNodes];
    item.replaceChildren(form);
    input.focus();
    input.select();
    const restore = () => {
      item.replaceChildren(...previous);
      item.querySelector(".rename")?.focus();
    };
    cancel.addEventListener("click", restore);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        restore();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const wanted = input.value.trim();
      if (!wanted) return;
      try {
        await sendJSON("PATCH", sessionUrl(session.session_id), { name: wanted });
      } catch (error) {
        showNotice(`Could not rename that conversation (${error.message}).`);
        restore();
        return;
      }
      announce(`Renamed to ${wanted}.`);
      await loadSessions();
      els.list.querySelector(`.session[data-session-id="${session.session_id}"]`)?.focus();
    });
  }

  async function deleteSession(session, name) {
    if (!window.confirm(`Delete “${name}” and all its messages? This cannot be undone.`)) return;
    try {
      await sendJSON("DELETE", sessionUrl(session.session_id));
    } catch (error) {
      showNotice(`Could not delete that conversation (${error.message}).`);
      return;
    }
    announce(`Deleted ${name}.`);
    if (state.sessionId === session.session_id) newSession();
    await loadSessions();
    els.search.focus();
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
      if (button.dataset.sessionId === sessionId) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    let session;
    try {
      session = await getJSON(sessionUrl(sessionId));
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
      run.done = stored.status !== "running" && stored.status !== "paused";
      state.runs.set(stored.run_id, run);
      if (!run.done) {
        // Still answering (a reload mid-run, or another device), or waiting for a decision:
        // replay it from the start (a paused run's replay ends with its RunPaused).
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
      const isJson = content !== null && typeof content === "object";
      partText(part, isJson ? JSON.stringify(content, null, 2) : content || "", isJson);
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
    const isJson = content !== null && typeof content === "object";
    showAnswer(run, isJson ? content : content || "", isJson);
    if (stored.status === "error") status(run, "failed", `Error: ${stored.error}`);
    else if (stored.status === "cancelled") status(run, "cancelled", "Stopped.");
    else status(run, "completed");
  }

  // A new conversation starts with who answers (its description; a team's members, a workflow's
  // steps) and the example prompts set in the admin: a click sends one.
  function showIntro() {
    const intro = intros[`${state.kind}:${state.slug}`];
    if (!intro || els.messages.childElementCount) return;
    const box = el("div", "intro");
    box.append(el("p", "intro-kind", state.kind), el("h2", null, intro.name));
    box.append(el("p", "intro-description", intro.description || `Ask ${intro.name} anything; the answer appears as it is written.`));
    if (intro.parts.length) {
      const label = state.kind === "team" ? "Members" : "Steps";
      const list = el(state.kind === "workflow" ? "ol" : "ul", "intro-parts");
      list.setAttribute("aria-label", label);
      for (const part of intro.parts) list.append(el("li", null, part));
      box.append(el("p", "intro-label", `${label}:`), list);
    }
    if (intro.examples && intro.examples.length) {
      const examples = el("ul", "examples");
      examples.setAttribute("aria-label", "Example prompts");
      for (const prompt of intro.examples) {
        const item = el("li");
        const button = el("button", "example", prompt);
        button.type = "button";
        button.addEventListener("click", () => {
          els.input.value = prompt;
          els.form.requestSubmit();
        });
        item.append(button);
        examples.append(item);
      }
      box.append(el("p", "intro-label", "Try:"), examples);
    }
    els.messages.append(box);
  }

  function newSession() {
    clearConversation();
    state.sessionId = null;
    showIntro();
    rememberLocation();
    for (const button of els.list.querySelectorAll(".session")) {
      button.classList.remove("current");
      button.removeAttribute("aria-current");
    }
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
    if (open) els.newSession.focus();
  });
  els.sessions.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && els.sessions.classList.contains("open")) {
      closeDrawer();
      els.toggle.focus();
    }
  });
  let searching = 0;
  els.search.addEventListener("input", () => {
    clearTimeout(searching);
    searching = setTimeout(loadSessions, 250);
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
