// The citesum page: send an article to POST /v1/summaries, show the summary beside the article,
// and light up the evidence. User and article text only ever enter the page as text nodes
// (textContent / createTextNode), never as HTML.
"use strict";

(() => {
  const API = "/v1/summaries";
  const $ = (id) => document.getElementById(id);
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  const state = {
    response: null,
    spans: new Map(), // sentence id -> article <span>
    citedBy: new Map(), // sentence id -> summary indices (0-based) that cite it
    selected: null, // index of the pinned summary sentence
    controller: null,
    timer: null,
    tick: null, // redraws the progress line
    progressNote: "", // "2 of 5 chunks summarized" while a job runs
    live: { sentences: 0, dropped: 0 }, // what the event stream has shown so far
  };

  /** Create an element with attributes and text/element children (strings become text nodes). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  // ---- copy formats ------------------------------------------------------------------------

  /** Number each cited source sentence once, in order of first citation. */
  function numberSources(summary) {
    const numbers = new Map();
    const sources = [];
    for (const sentence of summary) {
      for (const c of sentence.citations) {
        if (!numbers.has(c.sentence_id)) {
          numbers.set(c.sentence_id, sources.length + 1);
          sources.push(c);
        }
      }
    }
    return { numbers, sources };
  }

  function flagNote(sentence) {
    if (sentence.verdict === "supported") return "";
    return ` (unsupported${sentence.reason ? ": " + sentence.reason : ""})`;
  }

  /** The summary as plain text: "Sentence. [1][2]" lines, then a numbered list of quoted sources. */
  function formatPlain(response) {
    const { numbers, sources } = numberSources(response.summary);
    const lines = response.summary.map((s) => {
      const marks = s.citations.map((c) => `[${numbers.get(c.sentence_id)}]`);
      return `${s.text}${marks.length ? " " + [...new Set(marks)].join("") : ""}${flagNote(s)}`;
    });
    if (sources.length) {
      lines.push("", "Sources:");
      sources.forEach((c, i) => lines.push(`[${i + 1}] "${c.quote}" (${c.sentence_id})`));
    }
    return lines.join("\n") + "\n";
  }

  /** The summary as Markdown with footnotes: "Sentence.[^1][^2]" then "[^1]: quote" definitions. */
  function formatMarkdown(response) {
    const { numbers, sources } = numberSources(response.summary);
    const lines = response.summary.map((s) => {
      const marks = [...new Set(s.citations.map((c) => `[^${numbers.get(c.sentence_id)}]`))];
      return `${s.text}${marks.join("")}${flagNote(s)}`;
    });
    // Blank lines keep each summary sentence its own paragraph and the footnotes apart.
    const out = [lines.join("\n\n")];
    if (sources.length) {
      out.push(sources.map((c, i) => `[^${i + 1}]: "${c.quote}" (${c.sentence_id})`).join("\n"));
    }
    return out.join("\n\n") + "\n";
  }

  async function copy(text, label) {
    const status = $("copy-status");
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
      } else {
        // Plain-http pages on other hosts have no async clipboard; fall back to a selection copy.
        const area = el("textarea", { className: "visually-hidden", readonly: true });
        area.value = text;
        document.body.append(area);
        area.select();
        const ok = document.execCommand("copy");
        area.remove();
        if (!ok) throw new Error("copy refused");
      }
      status.textContent = `Copied ${label}.`;
    } catch {
      status.textContent = "Copy failed: select the summary and copy it by hand.";
    }
    setTimeout(() => { status.textContent = ""; }, 2500);
  }

  // ---- request, progress, errors -----------------------------------------------------------

  function showError(title, detail) {
    $("error-title").textContent = title;
    $("error-detail").textContent = detail || "";
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-title").textContent = "";
    $("error-detail").textContent = "";
  }

  // ---- access -------------------------------------------------------------------------------

  const KEY_STORAGE = "citesum-api-key";

  /** Authorization for the API when this server asks for a key; the key lives in this tab only. */
  function authHeaders() {
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** A 401 means the server wants a key: show the field (with the problem shown as usual). */
  function askForKey() {
    $("key-field").hidden = false;
    $("api-key").focus();
  }

  const remembered = sessionStorage.getItem(KEY_STORAGE);
  if (remembered) {
    $("api-key").value = remembered;
    $("key-field").hidden = false;
  }

  /** Turn a non-2xx answer (RFC 9457 problem+json, or anything else) into {title, detail}. */
  async function problemFrom(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON (a proxy's HTML error page, say): the status line is all we have.
    }
    const title = (body && body.title) || `Request failed (${response.status} ${response.statusText})`.trim();
    const parts = [];
    if (body && typeof body.detail === "string") parts.push(body.detail);
    // Field errors only when there is no detail: our detail already names the first few fields.
    if (body && !body.detail && Array.isArray(body.errors)) {
      for (const e of body.errors) {
        const where = e.field || (Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : "");
        parts.push(`${where ? where + ": " : ""}${e.message || e.msg || JSON.stringify(e)}`);
      }
    }
    const retry = response.headers.get("Retry-After");
    if (retry) parts.push(`Try again in ${retry} seconds.`);
    return { title, detail: parts.join(" ") };
  }

  function startProgress() {
    const started = performance.now();
    $("progress").hidden = false;
    $("submit").disabled = true;
    $("cancel").hidden = false;
    state.progressNote = "";
    $("progress-bar").removeAttribute("value");
    const tick = () => {
      const seconds = (performance.now() - started) / 1000;
      const note = state.progressNote ? ` ${state.progressNote},` : "";
      $("progress-text").textContent = `Summarizing and verifying…${note} ${seconds.toFixed(1)} s`;
    };
    tick();
    state.tick = tick;
    state.timer = setInterval(tick, 200);
  }

  function stopProgress() {
    clearInterval(state.timer);
    state.timer = null;
    state.tick = null;
    state.controller = null;
    $("progress").hidden = true;
    $("submit").disabled = false;
    $("cancel").hidden = true;
  }

  const sleep = (ms, signal) => new Promise((resolve, reject) => {
    const id = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(id); reject(new DOMException("Aborted", "AbortError")); }, { once: true });
  });

  /** Poll the job a 202 answer points at (GET /v1/jobs/{id}) until it succeeds or fails. */
  async function followJob(accepted, signal) {
    let job = await accepted.json();
    const url = accepted.headers.get("Location") || job.url || `/v1/jobs/${job.id}`;
    for (let wait = 150; ; wait = Math.min(wait * 1.5, 1000)) {
      showJobProgress(job);
      if (job.status === "succeeded") return render(job.result);
      if (job.status === "failed") {
        const error = job.error || {};
        return showError(error.title || "The summary failed", error.detail || "");
      }
      if (job.status !== "queued" && job.status !== "running") {
        return showError("Unexpected job state", `The job at ${url} is "${job.status}".`);
      }
      await sleep(wait, signal);
      const response = await fetch(url, { headers: { Accept: "application/json", ...authHeaders() }, signal });
      if (!response.ok) {
        if (response.status === 401) askForKey();
        const problem = await problemFrom(response);
        return showError(problem.title, problem.detail);
      }
      job = await response.json();
    }
  }

  function showJobProgress(job) {
    const progress = job.progress || {};
    const bar = $("progress-bar");
    if (progress.total > 0) {
      bar.max = progress.total;
      bar.value = progress.done;
      state.progressNote = `${progress.done} of ${progress.total} chunk${progress.total === 1 ? "" : "s"} summarized`;
    } else {
      bar.removeAttribute("value"); // indeterminate until the article is chunked
      state.progressNote = job.status === "queued" ? "Queued" : "";
    }
    if (job.attempts > 1) state.progressNote += ` (attempt ${job.attempts})`;
    if (state.tick) state.tick();
  }

  function requestBody() {
    const kind = document.querySelector('input[name="kind"]:checked').value;
    const body = {
      max_sentences: Number($("max-sentences").value) || 5,
      policy: $("policy").value,
      include_sentences: true,
    };
    if (kind === "url") {
      const url = $("url").value.trim();
      if (!url) return { error: "Enter the link of an article." };
      body.url = url;
    } else {
      const text = $("text").value;
      if (!text.trim()) return { error: "Paste the text of an article." };
      body.text = text;
    }
    return { body };
  }

  async function submit(event) {
    event.preventDefault();
    if (state.controller) return;
    clearError();
    const { body, error } = requestBody();
    if (error) {
      showError("Nothing to summarize", error);
      return;
    }
    state.controller = new AbortController();
    startProgress();
    try {
      const response = await fetch(API, {
        method: "POST",
        // Server-Sent Events: each sentence as soon as it is verified, progress, then the whole
        // answer. An older server answers 200 with JSON, or 202 with a job to poll.
        headers: {
          "Content-Type": "application/json",
          Accept: "text/event-stream, application/json, application/problem+json",
          ...authHeaders(),
        },
        body: JSON.stringify(body),
        signal: state.controller.signal,
      });
      if (!response.ok) {
        if (response.status === 401) askForKey();
        const problem = await problemFrom(response);
        showError(problem.title, problem.detail);
        return;
      }
      if (response.status === 202) {
        await followJob(response, state.controller.signal);
        return;
      }
      if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
        await readEvents(response);
        return;
      }
      render(await response.json());
    } catch (err) {
      if (err.name === "AbortError") showError("Cancelled", "The request was cancelled; nothing was summarized.");
      else if (err instanceof TypeError && /fetch|network/i.test(err.message)) {
        showError("Could not reach the service", `${err.message}. Check that the server is running.`);
      } else showError("Could not show the answer", String(err.message || err));
    } finally {
      stopProgress();
    }
  }

  // ---- the event stream ----------------------------------------------------------------------

  /** One SSE block ("event: x\ndata: {...}") as {event, data}, or null for comments and keep-alives. */
  function parseEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
  }

  /** Read the stream: sentences appear as they are verified; `done` draws the full answer. */
  async function readEvents(response) {
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    state.live = { sentences: 0, dropped: 0 };
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (event && onEvent(event)) return;
      }
    }
    showError("The answer stopped early", "The connection closed before the summary was complete.");
  }

  /** Handle one event; true when the stream is over (done or error). */
  function onEvent({ event, data }) {
    if (event === "progress") {
      showJobProgress({ status: "running", attempts: 1, progress: data });
    } else if (event === "sentence") {
      showLiveSentence(data);
    } else if (event === "dropped") {
      state.live.dropped += 1;
      $("meta").textContent = liveNote();
    } else if (event === "done") {
      render(data);
      return true;
    } else if (event === "error") {
      // Sentences already shown stay: they were verified.
      showError(data.title || "The summary failed", data.detail || "");
      return true;
    }
    return false;
  }

  function liveNote() {
    const dropped = state.live.dropped ? `, ${state.live.dropped} dropped as unsupported` : "";
    return `${state.live.sentences} sentence${state.live.sentences === 1 ? "" : "s"} verified so far${dropped}…`;
  }

  /** A sentence the server has just verified: shown at once, and lit up. */
  function showLiveSentence(sentence) {
    if (state.live.sentences === 0) {
      state.response = null;
      $("summary").replaceChildren();
      $("empty-summary").hidden = true;
      $("dropped").hidden = true;
      $("article").replaceChildren(el("p", { className: "muted" }, "The article, with the evidence of each sentence, appears when the summary is complete."));
      $("sentence-count").textContent = "";
      $("backrefs").textContent = "";
      $("result").hidden = false;
    }
    state.live.sentences += 1;
    const { badge } = badgeFor(sentence, $("policy").value);
    const cites = el("span", { className: "cites", "aria-label": "cites" },
      ...[...new Set(sentence.citations.map((c) => c.sentence_id))].map((id) => el("span", { className: "cite" }, id)));
    const item = el("div", { className: `sent live ${sentence.verdict === "supported" ? "supported" : "unsupported"}` },
      el("span", { className: "num" }, `${state.live.sentences}`),
      el("span", { className: "sent-body" },
        el("span", { className: "sent-text" }, sentence.text),
        el("span", { className: "sent-meta" }, badge, cites)));
    $("summary").append(el("li", {}, item));
    requestAnimationFrame(() => item.classList.add("lit"));
    $("meta").textContent = liveNote();
  }

  // ---- rendering ---------------------------------------------------------------------------

  /** Sentences to draw: the response's own list, or (older servers) the cited ranges alone. */
  function sentencesOf(response) {
    if (Array.isArray(response.document.sentences)) return response.document.sentences;
    const byId = new Map();
    for (const s of response.summary) {
      for (const c of s.citations) byId.set(c.sentence_id, { id: c.sentence_id, start: c.start, end: c.end });
    }
    return [...byId.values()];
  }

  /** Draw document.text with each sentence wrapped in a span at its offsets. */
  function renderArticle(text, sentences) {
    const article = $("article");
    article.replaceChildren();
    state.spans.clear();
    const ordered = [...sentences].sort((a, b) => a.start - b.start);
    let pos = 0;
    for (const s of ordered) {
      if (s.start < pos || s.end > text.length) continue; // overlapping or out of range: draw as plain text
      if (s.start > pos) article.append(document.createTextNode(text.slice(pos, s.start)));
      const cited = state.citedBy.has(s.id);
      const span = el(
        "span",
        {
          className: cited ? "src cited" : "src",
          "data-sid": s.id,
          tabindex: cited ? "0" : null, // only cited sentences are tab stops, or the page becomes a trap
          role: cited ? "button" : null,
        },
        text.slice(s.start, s.end),
      );
      article.append(span);
      state.spans.set(s.id, span);
      pos = s.end;
    }
    if (pos < text.length) article.append(document.createTextNode(text.slice(pos)));
  }

  function badgeFor(sentence, policy) {
    const supported = sentence.verdict === "supported";
    const score = typeof sentence.score === "number" ? ` (score ${sentence.score.toFixed(2)})` : "";
    const ids = sentence.citations.map((c) => c.sentence_id).join(", ");
    const reason = supported
      ? `Supported by ${ids || "the cited sentences"}${score}${sentence.recited ? "; citations corrected by the verifier" : ""}.`
      : `${sentence.reason || "Not supported by the cited sentences"}${score}.`;
    const label = supported ? "supported" : policy === "flag" ? "unsupported · flagged" : "unsupported";
    return {
      reason,
      badge: el("span", { className: `badge ${supported ? "ok" : "bad"}`, title: reason }, label),
    };
  }

  function renderSummary(response) {
    const list = $("summary");
    list.replaceChildren();
    response.summary.forEach((sentence, index) => {
      const { badge, reason } = badgeFor(sentence, response.policy);
      const reasonId = `reason-${index}`;
      const cites = el(
        "span",
        { className: "cites", "aria-label": "cites" },
        ...[...new Set(sentence.citations.map((c) => c.sentence_id))].map((id) => el("span", { className: "cite" }, id)),
      );
      const button = el(
        "button",
        {
          type: "button",
          className: `sent ${sentence.verdict === "supported" ? "supported" : "unsupported"}`,
          "data-index": index,
          "aria-pressed": "false",
          "aria-describedby": reasonId,
        },
        el("span", { className: "num" }, `${index + 1}`),
        el("span", { className: "sent-body" },
          el("span", { className: "sent-text" }, sentence.text),
          el("span", { className: "sent-meta" }, badge, cites),
          el("span", { className: "reason", id: reasonId }, reason)),
      );
      button.addEventListener("mouseenter", () => preview(index));
      button.addEventListener("mouseleave", () => preview(null));
      button.addEventListener("focus", () => preview(index));
      button.addEventListener("blur", () => preview(null));
      button.addEventListener("click", () => select(state.selected === index ? null : index));
      list.append(el("li", {}, button));
    });
    $("empty-summary").hidden = response.summary.length > 0;
  }

  function renderDropped(dropped) {
    const box = $("dropped");
    box.hidden = dropped.length === 0;
    $("dropped-count").textContent =
      `${dropped.length} sentence${dropped.length === 1 ? "" : "s"} dropped as unsupported`;
    $("dropped-list").replaceChildren(
      ...dropped.map((d) => el("li", {},
        el("span", {}, d.text),
        el("span", { className: "muted" }, ` — ${d.reason || "not supported by the evidence"}`))),
    );
  }

  function renderMeta(response) {
    const parts = [`Written by ${response.provider} (${response.model})`];
    if (response.prompt_version && response.prompt_version !== "none") parts.push(`prompt ${response.prompt_version}`);
    if (response.usage) parts.push(`${response.usage.llm_calls} LLM call${response.usage.llm_calls === 1 ? "" : "s"}`);
    if (response.chunks > 1) parts.push(`${response.chunks} chunks`);
    const timings = response.timings_ms || {};
    const total = timings.total_ms ?? timings.total;
    if (typeof total === "number") {
      const ms = total < 10 ? total.toFixed(1) : Math.round(total);
      parts.push("cache_ms" in timings ? `from cache in ${ms} ms` : `${ms} ms`);
    }
    $("meta").textContent = parts.join(" · ");
  }

  function render(response) {
    state.response = response;
    state.selected = null;
    state.citedBy.clear();
    response.summary.forEach((s, i) => {
      for (const c of s.citations) {
        const list = state.citedBy.get(c.sentence_id) || [];
        if (!list.includes(i)) list.push(i);
        state.citedBy.set(c.sentence_id, list);
      }
    });
    renderArticle(response.document.text, sentencesOf(response));
    renderSummary(response);
    renderDropped(response.dropped || []);
    renderMeta(response);
    const count = response.document.sentence_count;
    $("sentence-count").textContent = `${count} sentence${count === 1 ? "" : "s"}`;
    $("backrefs").textContent = "Select a highlighted article sentence to see which summary sentences rest on it.";
    $("result").hidden = false;
    $("result").scrollIntoView({ block: "start", behavior: reducedMotion ? "auto" : "smooth" });
  }

  // ---- highlighting ------------------------------------------------------------------------

  function citedSpans(index) {
    if (index === null || !state.response) return [];
    const spans = [];
    for (const c of state.response.summary[index].citations) {
      const span = state.spans.get(c.sentence_id);
      if (span && !spans.includes(span)) spans.push(span);
    }
    return spans;
  }

  function mark(className, spans) {
    for (const old of document.querySelectorAll(`#article .src.${className}`)) old.classList.remove(className);
    for (const span of spans) span.classList.add(className);
  }

  /** Scroll the article so `span` shows: inside its own pane on wide screens, the page on phones. */
  function reveal(span, { pageToo }) {
    const article = $("article");
    const smooth = reducedMotion ? "auto" : "smooth";
    if (article.scrollHeight > article.clientHeight + 1) {
      const top = Math.max(0, span.offsetTop - article.clientHeight / 3);
      // Chromium cancels one smooth scroll when another starts, so only one of the two may be smooth.
      article.scrollTo({ top, behavior: pageToo ? "auto" : smooth });
      if (pageToo) article.scrollIntoView({ block: "nearest", behavior: smooth });
    } else if (pageToo) {
      span.scrollIntoView({ block: "center", behavior: smooth });
    }
  }

  function preview(index) {
    const spans = citedSpans(index);
    mark("preview", spans);
    // Hover only scrolls the article's own pane; moving the whole page under the pointer would be hostile.
    if (spans.length) reveal(spans[0], { pageToo: false });
  }

  function select(index) {
    state.selected = index;
    for (const b of document.querySelectorAll("#summary .sent")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.index) === index));
    }
    const spans = citedSpans(index);
    mark("hl", spans);
    clearBackrefs();
    if (index === null) return;
    const ids = state.response.summary[index].citations.map((c) => c.sentence_id);
    $("backrefs").textContent = ids.length
      ? `Summary sentence ${index + 1} cites ${[...new Set(ids)].join(", ")}.`
      : `Summary sentence ${index + 1} cites nothing.`;
    if (spans.length) reveal(spans[0], { pageToo: true });
  }

  function clearBackrefs() {
    for (const b of document.querySelectorAll("#summary .sent.backref")) b.classList.remove("backref");
    for (const n of document.querySelectorAll("#article .backref-note")) n.remove();
    mark("picked", []);
  }

  /** Show which summary sentences rest on article sentence `sid`, next to it and in the summary. */
  function showBackrefs(sid) {
    clearBackrefs();
    const span = state.spans.get(sid);
    if (!span) return;
    span.classList.add("picked");
    const users = state.citedBy.get(sid) || [];
    const buttons = document.querySelectorAll("#summary .sent");
    for (const i of users) buttons[i].classList.add("backref");
    const message = users.length
      ? `${sid} is cited by summary sentence${users.length === 1 ? "" : "s"} ${users.map((i) => i + 1).join(", ")}.`
      : `${sid} is not cited by the summary.`;
    $("backrefs").textContent = message;
    const note = el("span", { className: "backref-note" }, users.length ? "cited by " : "not cited");
    for (const i of users) {
      const jump = el("button", { type: "button", className: "jump", "aria-label": `Go to summary sentence ${i + 1}` }, `${i + 1}`);
      jump.addEventListener("click", (event) => {
        event.stopPropagation();
        select(i);
        buttons[i].focus();
        buttons[i].scrollIntoView({ block: "nearest", behavior: reducedMotion ? "auto" : "smooth" });
      });
      note.append(jump);
    }
    span.after(note);
  }

  // ---- wiring ------------------------------------------------------------------------------

  function onKindChange() {
    const kind = document.querySelector('input[name="kind"]:checked').value;
    $("text-field").hidden = kind !== "text";
    $("url-field").hidden = kind !== "url";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("form").addEventListener("submit", submit);
    $("cancel").addEventListener("click", () => state.controller && state.controller.abort());
    for (const radio of document.querySelectorAll('input[name="kind"]')) radio.addEventListener("change", onKindChange);
    $("copy-text").addEventListener("click", () => state.response && copy(formatPlain(state.response), "plain text"));
    $("copy-md").addEventListener("click", () => state.response && copy(formatMarkdown(state.response), "Markdown"));

    const article = $("article");
    article.addEventListener("click", (event) => {
      const span = event.target.closest(".src");
      if (span) showBackrefs(span.dataset.sid);
    });
    article.addEventListener("keydown", (event) => {
      const span = event.target.closest(".src.cited");
      if (span && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault(); // Space would otherwise scroll the pane
        showBackrefs(span.dataset.sid);
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && state.response) {
        select(null);
        $("backrefs").textContent = "Select a highlighted article sentence to see which summary sentences rest on it.";
      }
    });
    onKindChange();
  });

  // A small handle for tests and the curious; nothing on the page depends on it.
  window.citesum = {
    formatPlain,
    formatMarkdown,
    get response() { return state.response; },
  };
})();
